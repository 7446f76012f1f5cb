import { spawn } from 'node:child_process';
import { KagomeError } from './errors.js';
import type { CageConfig } from './cage/config.js';
import type { Logger } from './log.js';
import { SHADOW_KEYS, DESKTOP_ENTRY } from './desktop/shadow.js';
import { requireProgram } from './requirements.js';
import { baseDirs, configSearchPath, dataSearchPath } from '../xdg/basedirs.js';
import { appsForType, findEntryInView, type MimeView } from '../xdg/mime-apps.js';
import type { LinkChooser } from './link-chooser.js';

// Links opened in a cage (issue 19): a program of a SessionBus=portal cage calls the OpenURI
// portal on its own bus, kagome's relay there passes the URI through the cage's proxy to the
// service (io.kagome.CagePortal1.OpenURI, the one kagome method the proxy lets through), and
// the service opens it where the cage's OpenLinks= key says. The cage is hostile: whatever it
// sends is checked here first, and the cage it comes from is the one whose proxy sent it, never
// what the message says.
//
// Which links: http, https and mailto. A file: URI is refused, because where a link goes next is
// a launch that grants the local files it names (Launcher.launchApp): a cage sending
// file:///home/you/.ssh/id_rsa to another cage, or to itself through the host's handler, would
// be handed that file. A cage's own documents are not carried either: they are the cage's, and
// "Open in cage" gives a host file to another cage with the person choosing it. The URI is
// printable ASCII (RFC 3986: anything else is percent-encoded), so no control character, newline
// or bidirectional override reaches a program's argv or a dialog, and at most MAX_LINK_BYTES.

export const LINK_SCHEMES: readonly string[] = ['http', 'https', 'mailto'];
/** Apache's default request line limit (8190) and then some: longer is not a link a person clicked. */
export const MAX_LINK_BYTES = 8192;

/** The URI's scheme, lower-cased, once the URI passes; an InvalidArgument or NotPermitted error otherwise. */
export function checkLink(uri: string): string {
  if (uri.length > MAX_LINK_BYTES)
    throw new KagomeError(
      'InvalidArgument',
      `a link of ${uri.length} characters is refused; links are at most ${MAX_LINK_BYTES}`,
    );
  const bad = /[^\x21-\x7e]/.exec(uri);
  if (bad) {
    throw new KagomeError(
      'InvalidArgument',
      `the link has the character U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}; a link is printable ASCII, anything else percent-encoded`,
    );
  }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri);
  if (!m) throw new KagomeError('InvalidArgument', 'the link has no scheme');
  const scheme = m[1]!.toLowerCase();
  if (!LINK_SCHEMES.includes(scheme)) {
    throw new KagomeError(
      'NotPermitted',
      `${scheme}: links from a cage are refused; only ${LINK_SCHEMES.join(', ')} cross (a file: link would hand that host file on)`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new KagomeError('InvalidArgument', 'the link does not parse as a URL');
  }
  // As written, not as parsed: WHATWG URL reads https:///x as the host "x".
  if (
    (scheme === 'http' || scheme === 'https') &&
    (!/^[^:]+:\/\/[^/?#]/.test(uri) || !parsed.hostname)
  )
    throw new KagomeError('InvalidArgument', 'the link names no host');
  return scheme;
}

/** The host's MIME-apps view: the service's own XDG folders, where shadow entries live. */
export function hostMimeView(env: Record<string, string | undefined>, log: Logger): MimeView {
  const dirs = baseDirs(env);
  return {
    configDirs: configSearchPath(dirs),
    dataDirs: dataSearchPath(dirs),
    desktops: (env.XDG_CURRENT_DESKTOP ?? '').split(':').filter(Boolean),
    warn: (m) => log.warn(m),
  };
}

export interface LinkDeps {
  config(cage: string): Promise<CageConfig>;
  /** runs the cage's own default program for the URI's scheme */
  openInCage(cage: string, uri: string): Promise<unknown>;
  /** runs a shadow's original entry in its cage with the URI */
  launchShadow(cage: string, entryId: string, uri: string): Promise<unknown>;
  /** the host's default program for a MIME type: its ID and entry, or undefined */
  hostDefault(type: string): Promise<{ id: string; cage?: string; entry?: string } | undefined>;
  /** the host's programs for a MIME type, default first, with cage and entry for shadows */
  hostHandlers(type: string): Promise<{ id: string; cage?: string; entry?: string }[]>;
  /** asks the person on the host where a link goes (OpenLinks=ask) */
  choose: LinkChooser;
  /** milliseconds, for the rate limit (Date.now) */
  now?: () => number;
  /** hands the URI to the host's own default handler (OpenLinks=host) */
  openOnHost(uri: string): void;
  log: Logger;
}

/** The host's default for a type, with the cage and original entry when it is a shadow. */
export async function hostDefaultIn(
  view: MimeView,
  type: string,
): Promise<{ id: string; cage?: string; entry?: string } | undefined> {
  return (await hostHandlersIn(view, type, 1))[0];
}

/** The host's programs for a type, default first, with cage and original entry for shadows. */
export async function hostHandlersIn(
  view: MimeView,
  type: string,
  limit = Infinity,
): Promise<{ id: string; cage?: string; entry?: string }[]> {
  const out: { id: string; cage?: string; entry?: string }[] = [];
  for (const id of await appsForType(type, view, limit)) {
    const found = await findEntryInView(id, view);
    const cage = found?.keyfile.get(DESKTOP_ENTRY, SHADOW_KEYS.cage);
    const entry = found?.keyfile.get(DESKTOP_ENTRY, SHADOW_KEYS.entry);
    out.push({ id, ...(cage && entry ? { cage, entry } : {}) });
  }
  return out;
}

/**
 * How fast one cage may open links: OpenLinksLimit= links at once, then one more each
 * LINK_REFILL_MS (a token bucket). A person clicks a few links in a row, rarely more than one
 * every few seconds for long; a hostile cage with OpenLinks=cage:B could otherwise start
 * programs in B without end, or, with OpenLinks=ask, flood the host with dialogs.
 */
export const LINK_REFILL_MS = 5000;

/** What the ask dialog's heading names: the link's host (or mail address) and the asking cage. */
export function askLocation(from: string, uri: string, scheme: string): string {
  let what = uri;
  if (scheme === 'mailto') what = uri.slice('mailto:'.length).split('?')[0] || 'a mail';
  else {
    try {
      what = new URL(uri).host;
    } catch {
      // checkLink has parsed it already
    }
  }
  return `${what}, a link from the cage ${from}`;
}

/** `gio open` on the host: GLib picks the default handler as the desktop would. */
export function gioOpen(
  env: Record<string, string | undefined>,
  log: Logger,
): (uri: string) => void {
  return (uri) => {
    const child = spawn(
      requireProgram('gio', 'to open links from cages on the host'),
      ['open', '--', uri],
      { env: env as NodeJS.ProcessEnv, stdio: 'ignore', detached: true },
    );
    child.on('error', (e) => log.warn(`gio open failed: ${e.message}`));
    child.unref();
  };
}

export class LinkOpener {
  /** per cage: links it may still open now, and when that was counted */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** cages with an ask dialog open: one at a time each */
  private readonly asking = new Set<string>();
  /** per cage: the desktop id chosen last in its dialog, preselected next time */
  private readonly lastChoice = new Map<string, string>();

  constructor(private readonly deps: LinkDeps) {}

  /** Takes one link from the cage's allowance, or refuses naming the limit. */
  private take(from: string, limit: number): void {
    if (limit <= 0) return;
    const now = (this.deps.now ?? Date.now)();
    const b = this.buckets.get(from) ?? { tokens: limit, at: now };
    b.tokens = Math.min(limit, b.tokens + (now - b.at) / LINK_REFILL_MS);
    b.at = now;
    this.buckets.set(from, b);
    if (b.tokens < 1) {
      const wait = Math.ceil(((1 - b.tokens) * LINK_REFILL_MS) / 1000);
      throw new KagomeError(
        'LimitReached',
        `cage ${from} opened ${limit} links in a row (OpenLinksLimit=${limit} in its file: then one each ${LINK_REFILL_MS / 1000} s); the next may go in ${wait} s`,
      );
    }
    b.tokens -= 1;
  }

  /** Opens `uri`, sent by a program of cage `from`, where that cage's OpenLinks= says. */
  async open(from: string, uri: string): Promise<string> {
    try {
      return await this.route(from, uri);
    } catch (e) {
      // The person clicked something and nothing opened: the log says why.
      this.deps.log.warn(`cage ${from}: a link was not opened: ${(e as Error).message}`);
      throw e;
    }
  }

  private async route(from: string, uri: string): Promise<string> {
    const { log } = this.deps;
    const scheme = checkLink(uri);
    const config = await this.deps.config(from);
    const policy = config.openLinks;
    const shown = uri.length > 200 ? `${uri.slice(0, 200)}…` : uri;
    if (policy === 'none')
      throw new KagomeError(
        'NotPermitted',
        `cage ${from} may not open links (OpenLinks=none in its file)`,
      );
    this.take(from, config.openLinksLimit);
    if (policy === 'ask' || policy === 'ask-with-host')
      return this.ask(from, uri, scheme, shown, policy === 'ask-with-host');
    if (policy.startsWith('cage:')) {
      const target = policy.slice('cage:'.length);
      log.info(`cage ${from}: opens ${shown} in cage ${target}`);
      await this.deps.openInCage(target, uri);
      return target;
    }
    const handler = await this.deps.hostDefault(`x-scheme-handler/${scheme}`);
    if (handler?.cage && handler.entry) {
      log.info(
        `cage ${from}: opens ${shown} with ${handler.entry} in cage ${handler.cage}, the host's default for ${scheme}:`,
      );
      await this.deps.launchShadow(handler.cage, handler.entry, uri);
      return handler.cage;
    }
    if (policy === 'host') {
      log.info(`cage ${from}: opens ${shown} with the host's default for ${scheme}:`);
      this.deps.openOnHost(uri);
      return '';
    }
    throw new KagomeError(
      'NotPermitted',
      `cage ${from} may open links only in a cage, and the host's default program for ${scheme}: links (${handler?.id ?? 'none'}) is not in one; put it in a cage (kagome app add), or set OpenLinks=host or OpenLinks=cage:NAME in the cage's file`,
    );
  }

  /** OpenLinks=ask: the person chooses on the host, each time; one dialog per cage at a time. */
  private async ask(
    from: string,
    uri: string,
    scheme: string,
    shown: string,
    withHost: boolean,
  ): Promise<string> {
    const { log } = this.deps;
    if (this.asking.has(from))
      throw new KagomeError(
        'LimitReached',
        `cage ${from} already asks where a link goes; one dialog at a time, answer it first`,
      );
    const handlers = await this.deps.hostHandlers(`x-scheme-handler/${scheme}`);
    const caged = handlers.filter((h) => h.cage && h.entry);
    // The host's default program, when it is not caged itself (that one is among the cages).
    const host = withHost && handlers[0] && !handlers[0].cage ? handlers[0] : undefined;
    const choices = [...caged, ...(host ? [host] : [])];
    if (!choices.length)
      throw new KagomeError(
        'NotPermitted',
        `cage ${from} asks where ${scheme}: links go (OpenLinks=${withHost ? 'ask-with-host' : 'ask'}), but no cage has a program for them; put one in a cage (kagome app add)${withHost ? '' : ", or set OpenLinks=ask-with-host to offer the host's own"}`,
      );
    this.asking.add(from);
    let chosen: string | undefined;
    try {
      chosen = await this.deps.choose({
        cage: from,
        location: askLocation(from, uri, scheme),
        choices: choices.map((c) => c.id),
        ...(this.lastChoice.has(from) ? { last: this.lastChoice.get(from)! } : {}),
      });
    } finally {
      this.asking.delete(from);
    }
    // The answer names one of the choices offered, or nothing: anything else is not followed.
    const pick = choices.find((c) => c.id === chosen);
    if (!pick)
      throw new KagomeError(
        'NotPermitted',
        `the link from cage ${from} was not opened: the person chose nowhere`,
      );
    this.lastChoice.set(from, pick.id);
    if (pick.cage && pick.entry) {
      log.info(`cage ${from}: opens ${shown} with ${pick.entry} in cage ${pick.cage}, as asked`);
      await this.deps.launchShadow(pick.cage, pick.entry, uri);
      return pick.cage;
    }
    log.info(`cage ${from}: opens ${shown} with the host's default for ${scheme}:, as asked`);
    this.deps.openOnHost(uri);
    return '';
  }
}
