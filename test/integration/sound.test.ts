import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { startListeningToHost } from '../helpers/pulseaudio.js';

// Sound across the cage wall against a real PulseAudio with a null sink ("host", standing for
// the speakers) and a null source ("microphone"). What a cage plays is measured on the sink's
// monitor on the host side; what a cage may not do is tried from inside it.

const PROBE = 'probe.txt';

/** Runs a shell script in the cage and returns what it printed (written to a file in its home). */
async function inCage(w: World, cage: string, script: string, timeoutMs = 20000): Promise<string> {
  const out = w.homeFile(cage, PROBE);
  fs.rmSync(out, { force: true });
  await w.launchCommand(cage, [
    'sh',
    '-c',
    `{ ${script}\n} > "$HOME/${PROBE}.tmp" 2>&1; mv "$HOME/${PROBE}.tmp" "$HOME/${PROBE}"`,
  ]);
  return w.readFileWhenWritten(out, timeoutMs);
}

async function cageProps(w: World, cage: string): Promise<Record<string, unknown>> {
  const props = await w.dbus.Cages1.Get(cage);
  return Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value as unknown]));
}

describe('sound bridge', () => {
  let w: World;

  before(async () => {
    w = await World.create({ pulseaudio: true });
    w.writeCage('player', '[Cage]\nSound=output\n');
    w.writeCage('silent', '[Cage]\nSound=none\n');
    w.writeCage('caller', '[Cage]\nSound=duplex\n');
    // A one-second 440 Hz tone at half scale, in each cage's home.
    for (const cage of ['player', 'silent', 'caller']) {
      fs.mkdirSync(path.dirname(w.homeFile(cage, 'tone.wav')), { recursive: true });
      await execa('sox', [
        '-n',
        '-r',
        '48000',
        '-c',
        '1',
        '-b',
        '16',
        w.homeFile(cage, 'tone.wav'),
        'synth',
        '1',
        'sine',
        '440',
        'vol',
        '0.5',
      ]);
    }
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
  });

  it('a tone played in an output cage reaches the host sink', async () => {
    const listening = (await startListeningToHost(w.pulse!, 4)).heard;
    const out = await inCage(w, 'player', 'paplay "$HOME/tone.wav" && echo played');
    const heard = await listening;
    assert.match(out, /played/, out);
    assert.ok(
      heard.peak > 0.3,
      `peak on the host monitor was ${heard.peak.toFixed(3)}; cage said: ${out}\n${w.cageLog('player')}`,
    );
  });

  it('the cage gets its own socket through its own module, and shows it as up', async () => {
    const props = await cageProps(w, 'player');
    assert.equal(props.Sound, 'output');
    assert.equal(props.SoundBridge, 'up');
    const modules = await w.pulse!.modules();
    const mine = modules.filter(
      ([, name, arg]) =>
        name === 'module-native-protocol-unix' && arg.includes(path.join('cages', 'player')),
    );
    assert.equal(mine.length, 1, JSON.stringify(modules));
    const out = await inCage(
      w,
      'player',
      'echo "server=$PULSE_SERVER"; test -S /run/user/$(id -u)/pulse/native && echo socket',
    );
    assert.match(out, /server=unix:\/run\/user\/\d+\/pulse\/native/);
    assert.match(out, /^socket$/m);
  });

  it('recording in an output cage is refused, and nothing of the microphone arrives', async () => {
    const out = await inCage(
      w,
      'player',
      'timeout 3 parec --raw "$HOME/rec.raw"; echo "exit=$?"; wc -c < "$HOME/rec.raw" 2>/dev/null || echo 0',
    );
    const [exitLine, bytes] = out.trim().split('\n').slice(-2);
    assert.notEqual(exitLine, 'exit=124', `parec kept recording: ${out}`);
    assert.notEqual(exitLine, 'exit=0', out);
    assert.equal(Number(bytes), 0, out);
    assert.match(w.cageLog('player') + (w.service?.log() ?? ''), /refused CREATE_RECORD_STREAM/);
  });

  it('a duplex cage may record', async () => {
    const out = await inCage(
      w,
      'caller',
      'timeout 3 parec --device=microphone --raw "$HOME/rec.raw"; echo "exit=$?"; wc -c < "$HOME/rec.raw"',
    );
    const [exitLine, bytes] = out.trim().split('\n').slice(-2);
    assert.equal(exitLine, 'exit=124', `parec should have recorded until stopped: ${out}`);
    assert.ok(Number(bytes) > 1000, `recorded ${bytes} bytes: ${out}`);
  });

  it('what would reach beyond the cage is refused: modules, other programs, the microphone list', async () => {
    const script = [
      'pactl load-module module-pipe-sink file="$HOME/x" && echo LOADED || echo load-refused',
      'pactl unload-module 0 && echo UNLOADED || echo unload-refused',
      'pactl set-default-sink microphone && echo DEFAULT || echo default-refused',
      'pactl set-sink-volume host 10% && echo VOLUME || echo volume-refused',
      'echo "clients=$(pactl list short clients | wc -l)"',
      'echo "modules=$(pactl list short modules | wc -l)"',
      'echo "sources=$(pactl list short sources | wc -l)"',
      'echo "sinks=$(pactl list short sinks | wc -l)"',
    ].join('\n');
    const out = await inCage(w, 'player', script);
    for (const word of [
      'load-refused',
      'unload-refused',
      'default-refused',
      'volume-refused',
      'clients=0',
      'modules=0',
      'sources=0',
      'sinks=1',
    ]) {
      assert.match(out, new RegExp(`^${word}$`, 'm'), out);
    }
    // The host server itself is untouched: its modules are still there and no pipe sink was made.
    const modules = await w.pulse!.modules();
    assert.ok(
      modules.some(([i]) => i === 0),
      JSON.stringify(modules),
    );
    assert.ok(!modules.some(([, name]) => name === 'module-pipe-sink'));
    assert.match(await w.pulse!.pactl(['get-default-sink']), /^host$/m);
  });

  it('no host socket, cookie or sound device is visible in a cage', async () => {
    const hostCookie = path.join(w.env.XDG_CONFIG_HOME!, 'pulse', 'cookie');
    assert.ok(fs.existsSync(hostCookie), 'the host server wrote its cookie');
    const hostCookieHex = fs.readFileSync(hostCookie).toString('hex');
    // The cage's home is mounted at the host home's path, so the host cookie's path inside is
    // the cage's own file: libpulse makes one there. It must not be the host's.
    const script = [
      `test -e '${w.pulse!.socket}' && echo host-socket || echo no-host-socket`,
      `test -e '${hostCookie}' && echo host-cookie || echo no-host-cookie`,
      'echo "cookie=$(od -An -tx1 "$HOME/.config/pulse/cookie" 2>/dev/null | tr -d " \\n")"',
      'test -e /dev/snd && echo snd || echo no-snd',
      'ls /dev',
    ].join('\n');
    for (const cage of ['player', 'silent']) {
      const out = await inCage(w, cage, script);
      for (const word of ['no-host-socket', 'no-host-cookie', 'no-snd'])
        assert.match(out, new RegExp(`^${word}$`, 'm'), `${cage}: ${out}`);
      const cookie = /^cookie=(.*)$/m.exec(out)?.[1];
      assert.notEqual(cookie, hostCookieHex, `${cage} sees the host's cookie`);
      assert.doesNotMatch(out, /^(snd|dsp|audio|mixer)/m, out);
    }
  });

  it('a Sound=none cage has no socket, starts no server of its own, and plays nothing', async () => {
    // Listening before the cage tries, so a tone that got through would be heard.
    const listening = (await startListeningToHost(w.pulse!, 3)).heard;
    const out = await inCage(
      w,
      'silent',
      'ls -A /run/user/$(id -u)/pulse; timeout 5 paplay "$HOME/tone.wav"; echo "exit=$?"; pgrep -x pulseaudio >/dev/null && echo spawned || echo no-daemon',
    );
    const heard = await listening;
    assert.doesNotMatch(out, /native/, out);
    assert.match(out, /^exit=[1-9]/m, out);
    assert.match(out, /^no-daemon$/m, out);
    assert.ok(heard.peak < 0.01, `heard ${heard.peak}`);
    const props = await cageProps(w, 'silent');
    assert.equal(props.Sound, 'none');
    assert.equal(props.SoundBridge, 'off');
  });

  it('when the cage stops, its module and sockets are gone from the host', async () => {
    const before = (await w.pulse!.modules()).filter(([, , arg]) =>
      arg.includes(path.join('cages', 'player')),
    );
    assert.equal(before.length, 1);
    const sockets = [
      before[0]![2].replace(/^.*socket=(\S+).*$/, '$1'),
      path.join(w.runtimeDir, 'cages', 'player', 'pulse', 'native'),
    ];
    for (const s of sockets) assert.ok(fs.existsSync(s), s);
    await w.dbus.Cages1.Stop('player');
    const after = (await w.pulse!.modules()).filter(([, , arg]) =>
      arg.includes(path.join('cages', 'player')),
    );
    assert.deepEqual(after, []);
    for (const s of sockets) assert.ok(!fs.existsSync(s), `${s} is still there`);
    const clients = await w.pulse!.pactl(['list', 'short', 'clients']);
    assert.doesNotMatch(clients, /paplay|parec/);
  });

  it('after kill -9 of the service, the next one takes the running cage up again, and cleans up a stopped one', async () => {
    await inCage(w, 'player', 'echo started');
    await inCage(w, 'caller', 'echo started');
    await w.killService();
    // While no service runs, the caller cage dies: its module must not outlive it.
    const callerInit = (w.cageState('caller') as { sandbox: { init: { pid: number } } }).sandbox
      .init.pid;
    process.kill(callerInit, 'SIGKILL');
    await w.startService();
    const listening = (await startListeningToHost(w.pulse!, 4)).heard;
    const out = await inCage(w, 'player', 'paplay "$HOME/tone.wav" && echo played');
    const heard = await listening;
    assert.match(out, /played/);
    assert.ok(heard.peak > 0.3, `after the restart the cage is silent (peak ${heard.peak})`);
    const modules = await w.pulse!.modules();
    assert.equal(
      modules.filter(([, , arg]) => arg.includes(path.join('cages', 'player'))).length,
      1,
      JSON.stringify(modules),
    );
    assert.equal(
      modules.filter(([, , arg]) => arg.includes(path.join('cages', 'caller'))).length,
      0,
      JSON.stringify(modules),
    );
  });

  it('a server that refuses per-cage sockets (as pipewire-pulse does) is reached through its main socket, with the cookie kept on the host', async () => {
    await w.dbus.Cages1.Stop('player');
    await w.killService();
    // pipewire-pulse answers load-module module-native-protocol-unix with an error; this pactl
    // does the same and passes everything else to the real one.
    const bin = path.join(w.tmp.root, 'pipewire-like-bin');
    fs.mkdirSync(bin, { recursive: true });
    const realPactl = (await execa('sh', ['-c', 'command -v pactl'])).stdout.trim();
    fs.writeFileSync(
      path.join(bin, 'pactl'),
      `#!/bin/sh\n[ "$1" = load-module ] && { echo 'Failure: Module initialization failed' >&2; exit 1; }\nexec ${realPactl} "$@"\n`,
      { mode: 0o755 },
    );
    await w.startService({ env: { PATH: `${bin}:${w.env.PATH}` } });
    const listening = (await startListeningToHost(w.pulse!, 4)).heard;
    const out = await inCage(
      w,
      'player',
      'paplay "$HOME/tone.wav" && echo played; timeout 2 parec --raw "$HOME/rec.raw"; echo "rec=$?"',
    );
    const heard = await listening;
    assert.match(out, /played/, out);
    assert.match(out, /^rec=1$/m, out);
    assert.ok(heard.peak > 0.3, `peak ${heard.peak}`);
    assert.match(w.service!.log(), /relaying to its main socket/);
    assert.equal(
      (await w.pulse!.modules()).filter(([, name]) => name === 'module-native-protocol-unix')
        .length,
      1,
      "only the server's own socket module",
    );
    await w.dbus.Cages1.Stop('player');
    await w.killService();
    await w.startService();
  });

  it('without a sound server the cage still starts, with its sound bridge down and the reason given', async () => {
    await w.dbus.Cages1.Stop('player');
    await w.pulse!.stop();
    const out = await inCage(w, 'player', 'echo started');
    assert.match(out, /started/);
    const props = await cageProps(w, 'player');
    assert.equal(props.SoundBridge, 'down');
    assert.match(
      String(props.BridgeProblems),
      /sound: no sound server on the host .*pulseaudio or pipewire-pulse/,
    );
    const list = await w.kagome(['list']);
    assert.match(list.stdout, /^player\trunning\t.*sound=output\(down\)/m, list.stdout);
  });
});
