import { spawn } from 'node:child_process';
import { KagomeError } from './errors.js';
import type { CageConfig } from './cage/config.js';
import type { Logger } from './log.js';
import { SHADOW_KEYS, DESKTOP_ENTRY } from './desktop/shadow.js';
import { requireProgram } from './requirements.js';
import { baseDirs, configSearchPath, dataSearchPath } from '../xdg/basedirs.js';
import { appsForType, findEntryInView, type MimeView } from '../xdg/mime-apps.js';

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
  /** hands the URI to the host's own default handler (OpenLinks=host) */
  openOnHost(uri: string): void;
  log: Logger;
}

/** The host's default for a type, with the cage and original entry when it is a shadow. */
export async function hostDefaultIn(
  view: MimeView,
  type: string,
): Promise<{ id: string; cage?: string; entry?: string } | undefined> {
  const id = (await appsForType(type, view, 1))[0];
  if (!id) return undefined;
  const found = await findEntryInView(id, view);
  const cage = found?.keyfile.get(DESKTOP_ENTRY, SHADOW_KEYS.cage);
  const entry = found?.keyfile.get(DESKTOP_ENTRY, SHADOW_KEYS.entry);
  return { id, ...(cage && entry ? { cage, entry } : {}) };
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
  constructor(private readonly deps: LinkDeps) {}

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
    const policy = (await this.deps.config(from)).openLinks;
    const shown = uri.length > 200 ? `${uri.slice(0, 200)}…` : uri;
    if (policy === 'none')
      throw new KagomeError(
        'NotPermitted',
        `cage ${from} may not open links (OpenLinks=none in its file)`,
      );
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
}
