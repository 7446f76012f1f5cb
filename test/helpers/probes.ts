// Shell lines, run inside a cage and on the host alike, that say whether the host's X server
// (its socket file, its abstract socket, a real X client) and session bus can be reached.
// python3 is in every cage (xpra needs it): it connects to sockets without any X or D-Bus
// library deciding on our behalf. Each line prints "NAME open" or "NAME closed".

export function hostDisplayAndBusProbe(displayNumber: string, busPath: string): string[] {
  const py = [
    'import socket',
    'def tryc(addr):',
    '    s = socket.socket(socket.AF_UNIX)',
    '    try:',
    '        s.connect(addr); return "open"',
    '    except OSError:',
    '        return "closed"',
    `print("x-path", tryc("/tmp/.X11-unix/X${displayNumber}"))`,
    `print("x-abstract", tryc("\\0/tmp/.X11-unix/X${displayNumber}"))`,
    `print("bus", tryc(${JSON.stringify(busPath)}))`,
  ].join('\n');
  return [
    `python3 -c '${py}'`,
    `xwininfo -root -display :${displayNumber} >/dev/null 2>&1 && echo "x-client open" || echo "x-client closed"`,
  ];
}
