import type dbus from 'dbus-next';

// The D-Bus contract as code: every interface, member and argument of the XML files beside
// this one, in their order, with their names and types. The XML is the source (packagers
// install it, and it carries the documentation); test/unit/dbus-contract.test.ts parses it and
// fails when this table says anything else. The service's member table, the typed client and
// the TypeScript types of every argument are all derived from here, so an argument changed in
// the XML is a failing unit test until this table follows, and then a failing build wherever
// code still sends or returns the old type.

export const BUS_NAME = 'io.kagome.Kagome';
export const OBJECT_PATH = '/io/kagome/Kagome';
export const LAUNCHER_IFACE = 'io.kagome.Launcher1';
export const CAGES_IFACE = 'io.kagome.Cages1';
export const FILES_IFACE = 'io.kagome.Files1';
export const CLIPBOARD_IFACE = 'io.kagome.Clipboard1';
export const CAGE_PORTAL_IFACE = 'io.kagome.CagePortal1';

/** One argument: its name in the XML, and its single complete D-Bus type. */
export type ArgSpec = readonly [name: string, type: string];
export interface MethodSpec {
  readonly in: readonly ArgSpec[];
  readonly out: readonly ArgSpec[];
}
export interface InterfaceSpec {
  readonly methods: Readonly<Record<string, MethodSpec>>;
  readonly signals: Readonly<Record<string, readonly ArgSpec[]>>;
}

export const CONTRACT = {
  [LAUNCHER_IFACE]: {
    methods: {
      Launch: {
        in: [
          ['cage', 's'],
          ['desktop_id', 's'],
          ['uris', 'as'],
          ['options', 'a{sv}'],
        ],
        out: [['program', 'o']],
      },
      LaunchCommand: {
        in: [
          ['cage', 's'],
          ['argv', 'as'],
          ['options', 'a{sv}'],
        ],
        out: [['program', 'o']],
      },
    },
    signals: {},
  },
  [CAGES_IFACE]: {
    methods: {
      List: { in: [], out: [['cages', 'a{sa{sv}}']] },
      Get: { in: [['cage', 's']], out: [['properties', 'a{sv}']] },
      Start: { in: [['cage', 's']], out: [] },
      Stop: { in: [['cage', 's']], out: [] },
      ListPrograms: { in: [['cage', 's']], out: [['programs', 'a(oasu)']] },
    },
    signals: {
      StateChanged: [
        ['cage', 's'],
        ['state', 's'],
        ['message', 's'],
      ],
      ProgramExited: [
        ['cage', 's'],
        ['program', 'o'],
        ['status', 'i'],
      ],
    },
  },
  [FILES_IFACE]: {
    methods: {
      GrantFiles: {
        in: [
          ['cage', 's'],
          ['fds', 'ah'],
          ['options', 'a{sv}'],
        ],
        out: [
          ['grants', 'a(sayaybb)'],
          ['programs', 'ao'],
        ],
      },
      GrantPaths: {
        in: [
          ['cage', 's'],
          ['paths', 'aay'],
          ['options', 'a{sv}'],
        ],
        out: [
          ['grants', 'a(sayaybb)'],
          ['programs', 'ao'],
        ],
      },
      OpenURIs: {
        in: [
          ['cage', 's'],
          ['uris', 'as'],
          ['options', 'a{sv}'],
        ],
        out: [
          ['grants', 'a(sayaybb)'],
          ['programs', 'ao'],
        ],
      },
      ListGrants: { in: [['cage', 's']], out: [['grants', 'a(sayaybb)']] },
      Revoke: {
        in: [
          ['cage', 's'],
          ['ids', 'as'],
        ],
        out: [],
      },
    },
    signals: {},
  },
  [CLIPBOARD_IFACE]: {
    methods: {
      CopyToCage: {
        in: [['cage', 's']],
        out: [
          ['kind', 's'],
          ['bytes', 'u'],
        ],
      },
      CopyToHost: {
        in: [['cage', 's']],
        out: [
          ['kind', 's'],
          ['bytes', 'u'],
        ],
      },
    },
    signals: {},
  },
  [CAGE_PORTAL_IFACE]: {
    methods: {
      OpenURI: {
        in: [
          ['uri', 's'],
          ['options', 'a{sv}'],
        ],
        out: [],
      },
      AddNotification: {
        in: [
          ['id', 's'],
          ['notification', 'a{sv}'],
        ],
        out: [],
      },
      RemoveNotification: {
        in: [['id', 's']],
        out: [],
      },
    },
    signals: {},
  },
} as const satisfies Record<string, InterfaceSpec>;

export type Contract = typeof CONTRACT;
export type InterfaceName = keyof Contract;
export type MethodName<I extends InterfaceName> = keyof Contract[I]['methods'] & string;
export type SignalName<I extends InterfaceName> = keyof Contract[I]['signals'] & string;

// What dbus-next gives and takes for each D-Bus type (see types/dbus-next.d.ts). A type it does
// not know makes DBusValue `never`, so a typo in the table cannot pass as `any`.
export type Variant = InstanceType<typeof dbus.Variant>;
interface Basic {
  y: number;
  b: boolean;
  n: number;
  q: number;
  i: number;
  u: number;
  d: number;
  h: number;
  s: string;
  o: string;
  g: string;
  v: Variant;
  x: bigint;
  t: bigint;
}

/** [the value of the first complete type in S, the rest of S]. */
type Take<S extends string> = S extends `ay${infer R}`
  ? [Buffer, R]
  : S extends `a{${infer R}`
    ? Take<R> extends [infer K, infer R1 extends string]
      ? Take<R1> extends [infer V, `}${infer R2}`]
        ? [Record<K & (string | number), V>, R2]
        : never
      : never
    : S extends `a${infer R}`
      ? Take<R> extends [infer T, infer R1]
        ? [T[], R1]
        : never
      : S extends `(${infer R}`
        ? TakeFields<R, []>
        : S extends `${infer C extends keyof Basic}${infer R}`
          ? [Basic[C], R]
          : never;
type TakeFields<S extends string, Acc extends unknown[]> = S extends `)${infer R}`
  ? [Acc, R]
  : Take<S> extends [infer T, infer R extends string]
    ? TakeFields<R, [...Acc, T]>
    : never;

/** The JavaScript value of one single complete D-Bus type, e.g. DBusValue<'a(sb)'> is [string, boolean][]. */
export type DBusValue<S extends string> = Take<S> extends [infer T, ''] ? T : never;

/** The values of a list of arguments, as a tuple. */
export type ArgValues<A extends readonly ArgSpec[]> = {
  -readonly [K in keyof A]: A[K] extends readonly [string, infer T extends string]
    ? DBusValue<T>
    : never;
};

type Method<
  I extends InterfaceName,
  M extends MethodName<I>,
> = Contract[I]['methods'][M] extends infer S extends MethodSpec ? S : never;
export type MethodArgs<I extends InterfaceName, M extends MethodName<I>> = ArgValues<
  Method<I, M>['in']
>;
export type MethodOutputs<I extends InterfaceName, M extends MethodName<I>> = ArgValues<
  Method<I, M>['out']
>;
/**
 * What a method resolves to, as dbus-next's own proxies and service objects have it: nothing,
 * the one output, or the outputs as a tuple.
 */
export type MethodResult<I extends InterfaceName, M extends MethodName<I>> = Reply<
  MethodOutputs<I, M>
>;
type Reply<O extends unknown[]> = O extends [] ? void : O extends [infer T] ? T : O;
export type SignalArgs<
  I extends InterfaceName,
  S extends SignalName<I>,
> = Contract[I]['signals'][S] extends infer A extends readonly ArgSpec[] ? ArgValues<A> : never;

/** A file grant as Files1 returns it: (id, path in cage, host path, writable, persistent). */
export type GrantTuple = MethodResult<typeof FILES_IFACE, 'ListGrants'>[number];

export function signatureOf(args: readonly ArgSpec[]): string {
  return args.map(([, type]) => type).join('');
}

/**
 * An interface's members as dbus-next's `Interface.configureMembers` takes them, so that what a
 * service object accepts and what Introspect reports are the contract's types.
 */
export function memberTable(iface: InterfaceName): {
  methods: Record<string, { inSignature: string; outSignature: string }>;
  signals: Record<string, { signature: string }>;
} {
  const spec: InterfaceSpec = CONTRACT[iface];
  return {
    methods: Object.fromEntries(
      Object.entries(spec.methods).map(([m, { in: args, out }]) => [
        m,
        { inSignature: signatureOf(args), outSignature: signatureOf(out) },
      ]),
    ),
    signals: Object.fromEntries(
      Object.entries(spec.signals).map(([m, args]) => [m, { signature: signatureOf(args) }]),
    ),
  };
}

export function methodSpec(iface: string, member: string): MethodSpec | undefined {
  const spec = (CONTRACT as Record<string, InterfaceSpec>)[iface];
  return spec && Object.hasOwn(spec.methods, member) ? spec.methods[member] : undefined;
}
