import dbus from 'dbus-next';
import {
  BUS_NAME,
  CONTRACT,
  OBJECT_PATH,
  signatureOf,
  type InterfaceName,
  type InterfaceSpec,
  type MethodArgs,
  type MethodName,
  type MethodResult,
} from './contract.js';

// Typed calls to the kagome service, one function per method of the contract, each sending the
// signature the contract gives it: callers (the CLI, tests, benchmarks) write no signature of
// their own, and an argument of the wrong type is a compile error.
//
//   const kagome = kagomeClient(bus);
//   const program = await kagome.Launcher1.LaunchCommand('web', ['firefox'], {});
//
// A method resolves to nothing, its one output, or its outputs as a tuple, as dbus-next's own
// proxies do. An error from the service rejects with dbus-next's DBusError unchanged (`type` is
// the D-Bus error name, `text` its message), so callers see exactly what the service said.

type Bus = ReturnType<typeof dbus.sessionBus>;

/** 'io.kagome.Cages1' is reached as client.Cages1. */
type ShortName<I extends string> = I extends `io.kagome.${infer S}` ? S : never;

export type InterfaceClient<I extends InterfaceName> = {
  readonly [M in MethodName<I>]: (...args: MethodArgs<I, M>) => Promise<MethodResult<I, M>>;
};
export type KagomeClient = { readonly [I in InterfaceName as ShortName<I>]: InterfaceClient<I> };

export function kagomeClient(bus: Bus): KagomeClient {
  const client: Record<string, Record<string, (...body: unknown[]) => Promise<unknown>>> = {};
  for (const [iface, spec] of Object.entries(CONTRACT as Record<string, InterfaceSpec>)) {
    const calls: Record<string, (...body: unknown[]) => Promise<unknown>> = {};
    for (const [member, method] of Object.entries(spec.methods)) {
      const signature = signatureOf(method.in);
      const outputs = method.out.length;
      calls[member] = async (...body) => {
        const reply = await bus.call(
          new dbus.Message({
            destination: BUS_NAME,
            path: OBJECT_PATH,
            interface: iface,
            member,
            signature,
            body,
          }),
        );
        const out = reply?.body ?? [];
        return outputs === 0 ? undefined : outputs === 1 ? out[0] : out;
      };
    }
    client[iface.slice('io.kagome.'.length)] = calls;
  }
  // The loops above build exactly the shape KagomeClient describes, from the same table.
  return client as unknown as KagomeClient;
}
