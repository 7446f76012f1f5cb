import dbus from 'dbus-next';

// A notification server on the test's private bus, recording what kagome tells the user.

const { Interface } = dbus.interface;

export class FakeNotifications extends Interface {
  calls: {
    /** the id the server answered with */
    id: number;
    app: string;
    summary: string;
    body: string;
    icon: string;
    replaces: number;
    actions: string[];
    desktopEntry?: string;
    urgency?: number;
    progress?: number;
  }[] = [];
  /** ids CloseNotification was called with */
  closed: number[] = [];
  private ids = 0;
  Notify(
    app: string,
    replaces: number,
    icon: string,
    summary: string,
    body: string,
    actions: string[],
    hints: Record<string, { value: unknown }>,
  ): number {
    const value = hints?.value?.value;
    const entry = hints?.['desktop-entry']?.value;
    const urgency = hints?.urgency?.value;
    // As servers do: a replacing notification keeps its id.
    const id = replaces || ++this.ids;
    this.calls.push({
      id,
      app,
      summary,
      body,
      icon,
      replaces,
      actions,
      ...(typeof entry === 'string' ? { desktopEntry: entry } : {}),
      ...(typeof urgency === 'number' ? { urgency } : {}),
      ...(typeof value === 'number' ? { progress: value } : {}),
    });
    return id;
  }
  CloseNotification(id: number): void {
    this.closed.push(id);
  }
}
FakeNotifications.configureMembers({
  methods: {
    Notify: { inSignature: 'susssasa{sv}i', outSignature: 'u' },
    CloseNotification: { inSignature: 'u', outSignature: '' },
  },
});

/** Owns org.freedesktop.Notifications on the bus at `address` until stopped. */
export async function startNotifications(
  address: string,
): Promise<{ server: FakeNotifications; stop(): void }> {
  const bus = dbus.sessionBus({ busAddress: address });
  const server = new FakeNotifications('org.freedesktop.Notifications');
  bus.export('/org/freedesktop/Notifications', server);
  await bus.requestName('org.freedesktop.Notifications', 4);
  return { server, stop: () => bus.disconnect() };
}
