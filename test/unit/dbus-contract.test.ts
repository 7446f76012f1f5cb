import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOMParser, onWarningStopParsing, type Element } from '@xmldom/xmldom';
import dbus from 'dbus-next';
import { execa } from 'execa';
import {
  BUS_NAME,
  CONTRACT,
  OBJECT_PATH,
  signatureOf,
  type ArgSpec,
  type InterfaceSpec,
  type MethodSpec,
} from '../../dbus/contract.js';
import { kagomeClient } from '../../dbus/client.js';
import {
  CagesInterface,
  ClipboardInterface,
  CagePortalInterface,
  FilesInterface,
  LauncherInterface,
} from '../../dbus/service.js';

// The introspection XML in dbus/ is the D-Bus contract. Everything that speaks it is checked
// against the XML here: the table in dbus/contract.ts (from which the service's member table,
// the typed client and the argument types are made), what the service objects really
// introspect as, what the client really sends, and what bin/kagome-open sends through busctl
// and gdbus, which, being a shell script, cannot share the table.

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const XML_DIR = path.join(REPO, 'dbus');

/** The element children of e, refusing any element the contract table has no place for. */
function elements(e: Element, allowed: string[]): Element[] {
  const out = [...e.children];
  for (const c of out)
    assert.ok(
      allowed.includes(c.tagName),
      `<${c.tagName}> in <${e.tagName} name="${e.getAttribute('name') ?? ''}"> is not in dbus/contract.ts: add it there (and to this test) first`,
    );
  return out;
}

function attr(e: Element, name: string): string {
  const v = e.getAttribute(name);
  assert.ok(v !== null && v !== '', `<${e.tagName}> without ${name}`);
  return v;
}

function args(e: Element, direction: 'in' | 'out'): ArgSpec[] {
  // The introspection format's default: method arguments are "in", signal arguments "out".
  const fallback = e.tagName === 'method' ? 'in' : 'out';
  return elements(e, ['arg'])
    .filter((a) => (a.getAttribute('direction') || fallback) === direction)
    .map((a) => [attr(a, 'name'), attr(a, 'type')] as const);
}

/** Every interface of one XML file, in the shape of CONTRACT. */
function readXml(file: string): Record<string, InterfaceSpec> {
  const doc = new DOMParser({ onError: onWarningStopParsing }).parseFromString(
    fs.readFileSync(file, 'utf8'),
    'text/xml',
  );
  const root = doc.documentElement;
  assert.equal(root?.tagName, 'node', file);
  const out: Record<string, InterfaceSpec> = {};
  for (const i of elements(root, ['interface'])) {
    const methods: Record<string, MethodSpec> = {};
    const signals: Record<string, readonly ArgSpec[]> = {};
    for (const m of elements(i, ['method', 'signal'])) {
      if (m.tagName === 'method')
        methods[attr(m, 'name')] = { in: args(m, 'in'), out: args(m, 'out') };
      else {
        assert.deepEqual(
          args(m, 'in'),
          [],
          `signal ${attr(m, 'name')} has an argument with direction="in"`,
        );
        signals[attr(m, 'name')] = args(m, 'out');
      }
    }
    out[attr(i, 'name')] = { methods, signals };
  }
  return out;
}

const xmlFiles = fs.readdirSync(XML_DIR).filter((f) => f.endsWith('.xml'));
const XML: Record<string, InterfaceSpec> = Object.assign(
  {},
  ...xmlFiles.map((f) => readXml(path.join(XML_DIR, f))),
);

describe('the D-Bus contract is the XML in dbus/', () => {
  it('each XML file holds the one interface it is named after', () => {
    assert.ok(xmlFiles.length >= 4, `found ${xmlFiles.join(', ')}`);
    for (const f of xmlFiles)
      assert.deepEqual(Object.keys(readXml(path.join(XML_DIR, f))), [f.replace(/\.xml$/, '')]);
  });

  it('dbus/contract.ts says what the XML says: every interface, member, argument name, type and order', () => {
    assert.deepEqual(CONTRACT, XML);
  });

  it("the service's objects introspect as the XML, and implement every method", () => {
    // dbus-next's typings leave out what an exported object knows of itself.
    type Introspected = {
      method?: { $: { name: string }; arg: { $: { direction: string; type: string } }[] }[];
      signal?: { $: { name: string }; arg: { $: { type: string } }[] }[];
    };
    type Exported = { $name: string; $introspect(): Introspected } & Record<string, unknown>;
    const objects = [
      new LauncherInterface(null as never),
      new CagesInterface(null as never),
      new FilesInterface(null as never),
      new ClipboardInterface(null as never),
      new CagePortalInterface(null as never),
    ] as unknown as Exported[];
    assert.deepEqual(objects.map((o) => o.$name).sort(), Object.keys(XML).sort());
    for (const o of objects) {
      const spec = XML[o.$name]!;
      const seen = o.$introspect();
      // dbus-next introspects types and directions only; names are checked through the table.
      assert.deepEqual(
        Object.fromEntries(
          (seen.method ?? []).map((m) => [
            m.$.name,
            m.arg.map((a) => `${a.$.direction} ${a.$.type}`),
          ]),
        ),
        Object.fromEntries(
          Object.entries(spec.methods).map(([m, s]) => [
            m,
            [...s.in.map(([, t]) => `in ${t}`), ...s.out.map(([, t]) => `out ${t}`)],
          ]),
        ),
        o.$name,
      );
      assert.deepEqual(
        Object.fromEntries((seen.signal ?? []).map((s) => [s.$.name, s.arg.map((a) => a.$.type)])),
        Object.fromEntries(Object.entries(spec.signals).map(([s, a]) => [s, a.map(([, t]) => t)])),
        o.$name,
      );
      for (const m of Object.keys(spec.methods))
        assert.equal(typeof o[m], 'function', `${o.$name}.${m}`);
    }
  });

  it('the client sends each method with its signature and unwraps the reply as the XML has it', async () => {
    const sent: InstanceType<typeof dbus.Message>[] = [];
    const replies = [['one'], ['first', 'second'], []];
    let reply: unknown[] = [];
    const bus = {
      call: async (m: InstanceType<typeof dbus.Message>) => {
        sent.push(m);
        return { body: reply };
      },
    };
    const client = kagomeClient(bus as never) as unknown as Record<
      string,
      Record<string, (...a: unknown[]) => Promise<unknown>>
    >;
    assert.deepEqual(
      Object.keys(client).sort(),
      Object.keys(XML)
        .map((i) => i.replace(/^io\.kagome\./, ''))
        .sort(),
    );
    for (const [iface, spec] of Object.entries(XML)) {
      const calls = client[iface.replace(/^io\.kagome\./, '')]!;
      assert.deepEqual(Object.keys(calls).sort(), Object.keys(spec.methods).sort(), iface);
      for (const [member, m] of Object.entries(spec.methods)) {
        reply = replies[Math.min(m.out.length, 2) - 1] ?? [];
        const body = m.in.map(([name]) => name);
        const result = await calls[member]!(...body);
        const msg = sent.pop()!;
        assert.deepEqual(
          [msg.destination, msg.path, msg.interface, msg.member, msg.signature, msg.body],
          [BUS_NAME, OBJECT_PATH, iface, member, signatureOf(m.in), body],
        );
        assert.deepEqual(
          result,
          m.out.length === 0 ? undefined : m.out.length === 1 ? 'one' : ['first', 'second'],
          `${iface}.${member}`,
        );
      }
    }
  });

  it("the client passes the service's error on as it came: D-Bus name and message", async () => {
    const error = new dbus.DBusError('io.kagome.Error.NoSuchCage', 'no cage named x');
    const client = kagomeClient({ call: () => Promise.reject(error) } as never);
    await assert.rejects(client.Cages1.Stop('x'), (e) => e === error);
  });
});

/** Where one complete type that starts at sig[i] ends. */
function typeEnd(sig: string, i: number): number {
  const c = sig[i];
  if (c === 'a') return typeEnd(sig, i + 1);
  if (c === '(' || c === '{') {
    let j = i + 1;
    while (sig[j] !== (c === '(' ? ')' : '}')) {
      assert.ok(j < sig.length, `unbalanced signature ${sig}`);
      j = typeEnd(sig, j);
    }
    return j + 1;
  }
  return i + 1;
}

function completeTypes(sig: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < sig.length;) {
    const end = typeEnd(sig, i);
    out.push(sig.slice(i, end));
    i = end;
  }
  return out;
}

/** Takes the busctl command-line values of one complete type off `values` (busctl(1), "call"). */
function takeBusctlValue(type: string, values: string[]): void {
  const c = type[0];
  if (c === 'a') {
    const n = values.shift();
    assert.match(n ?? '', /^\d+$/, `an array of ${type} needs its length first, not ${n}`);
    for (let k = 0; k < Number(n); k++) takeBusctlValue(type.slice(1), values);
  } else if (c === '{' || c === '(') {
    for (const t of completeTypes(type.slice(1, -1))) takeBusctlValue(t, values);
  } else if (c === 'v') {
    const inner = values.shift();
    assert.ok(inner, 'a variant needs its type first');
    takeBusctlValue(inner, values);
  } else {
    assert.ok(values.shift() !== undefined, `a value of type ${type} is missing`);
  }
}

describe('bin/kagome-open sends what the XML says, through busctl and through gdbus', () => {
  const KAGOME_OPEN = path.join(REPO, 'bin', 'kagome-open');
  const cases: { what: string; argv: string[]; member: string }[] = [
    {
      what: 'a command',
      argv: ['--cage', 'c', '--', 'prog', '-x', ''],
      member: 'io.kagome.Launcher1.LaunchCommand',
    },
    {
      what: 'an entry with files',
      argv: ['--cage', 'c', '--entry', 'e.desktop', '--', '/tmp/a b', 'https://x/'],
      member: 'io.kagome.Launcher1.Launch',
    },
    {
      what: "an entry's action",
      argv: ['--cage', 'c', '--entry', 'e.desktop', '--action', 'new'],
      member: 'io.kagome.Launcher1.Launch',
    },
    {
      what: 'files to open',
      argv: ['--cage', 'c', '--open', '--', '/tmp/a', 'rel'],
      member: 'io.kagome.Files1.OpenURIs',
    },
  ];
  const recorder = '#!/bin/sh\nprintf \'%s\\0\' "$@" > "$KAGOME_TEST_RECORD"\n';

  /** A folder with a recording `transport` and the tools kagome-open needs besides it, as the whole PATH. */
  async function pathWith(root: string, transport: string): Promise<string> {
    const dir = path.join(root, transport);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, transport), recorder, { mode: 0o755 });
    for (const tool of ['od', 'awk', 'sed', 'iconv']) {
      const found = (
        await execa('sh', ['-c', 'command -v "$1"', 'sh', tool], { reject: false })
      ).stdout.trim();
      if (found.startsWith('/')) fs.symlinkSync(found, path.join(dir, tool));
    }
    return dir;
  }

  async function sent(
    transport: string,
    argv: string[],
    startupId: string | undefined,
  ): Promise<string[]> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-open-contract-'));
    try {
      const record = path.join(root, 'argv');
      const env: Record<string, string> = {
        PATH: await pathWith(root, transport),
        KAGOME_TEST_RECORD: record,
        PWD: root,
        ...(startupId ? { XDG_ACTIVATION_TOKEN: startupId } : {}),
      };
      const r = await execa('/bin/sh', [KAGOME_OPEN, ...argv], {
        env,
        extendEnv: false,
        cwd: root,
        reject: false,
      });
      assert.equal(r.exitCode, 0, r.stderr);
      return fs.readFileSync(record, 'utf8').split('\0').slice(0, -1);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }

  function method(qualified: string): MethodSpec {
    const dot = qualified.lastIndexOf('.');
    const m = XML[qualified.slice(0, dot)]?.methods[qualified.slice(dot + 1)];
    assert.ok(m, `${qualified} is not in the XML`);
    return m;
  }

  for (const c of cases) {
    for (const startupId of [undefined, 'token-1']) {
      it(`busctl: ${c.what}${startupId ? ', with a startup id' : ''}`, async () => {
        const argv = await sent('busctl', c.argv, startupId);
        const at = argv.indexOf('call');
        assert.ok(at > 0 && argv.slice(0, at).includes('--'), `busctl ${argv.join(' ')}`);
        const [, dest, objectPath, iface, member, signature, ...values] = argv.slice(at);
        assert.deepEqual(
          [dest, objectPath, `${iface}.${member}`],
          [BUS_NAME, OBJECT_PATH, c.member],
        );
        assert.equal(signature, signatureOf(method(c.member).in));
        // The values must be exactly what the signature announces, no more and no fewer.
        for (const t of completeTypes(signature!)) takeBusctlValue(t, values);
        assert.deepEqual(values, [], 'values left over after the signature');
        assert.equal(argv[at + 6], 'c', 'the cage comes first');
      });

      it(`gdbus: ${c.what}${startupId ? ', with a startup id' : ''}`, async () => {
        const argv = await sent('gdbus', c.argv, startupId);
        const flag = (name: string) => argv[argv.indexOf(name) + 1];
        assert.deepEqual(
          [argv[0], flag('--dest'), flag('--object-path'), flag('--method')],
          ['call', BUS_NAME, OBJECT_PATH, c.member],
        );
        const params = argv.slice(argv.indexOf('--') + 1);
        const types = method(c.member).in.map(([, t]) => t);
        assert.equal(params.length, types.length, `gdbus ${params.join(' ')}`);
        // A typed literal must name the XML's type; an untyped one is a string literal.
        params.forEach((p, k) => {
          if (p.startsWith('@')) assert.equal(p.slice(1, p.indexOf(' ')), types[k], p);
          else {
            assert.equal(types[k], 's', p);
            assert.match(p, /^'.*'$/s);
          }
        });
      });
    }
  }
});
