import fsp from 'node:fs/promises';
import path from 'node:path';
import { Keyfile } from '../../xdg/keyfile.js';
import { DESKTOP_ENTRY } from './shadow.js';
import { writeAtomically } from './write-atomically.js';

// The cage's own desktop entry, $XDG_DATA_HOME/applications/io.kagome.Cage_NAME.desktop: never
// in a menu (NoDisplay=true), it names the cage to the desktop wherever the cage's app id stands
// for a program. Notifications from the cage carry that id as their desktop-entry hint
// (lib/cage-notifications.ts), and GNOME Shell and Plasma show the entry's Name and Icon for
// them; the icon is a square in the cage's border colour, in $XDG_DATA_HOME/kagome/cage-icons.
// Written when a SessionBus=portal cage starts (the only cages that can notify), removed with
// the cage (`kagome cage remove`).

export const CAGE_ENTRY_KEY = 'X-Kagome-Cage';

/** The cage's app id, as its file grants and the portal know it, and its entry's file name. */
export function cageEntryId(cage: string): string {
  return `io.kagome.Cage_${cage}.desktop`;
}

/** What the desktop calls the cage. */
export function cageEntryName(cage: string): string {
  return `${cage} (kagome cage)`;
}

/** A square in `colour` (a cage's Border=: #rgb, #rrggbb or an X11 name), grey without one. */
export function cageIconSvg(colour: string | undefined): string {
  // X11 names are CSS names without their spaces ("dark green" is darkgreen); Border= allows
  // nothing else, so nothing here can end the attribute.
  const fill = colour ? colour.replace(/\s+/g, '').toLowerCase() : '#888888';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect x="4" y="4" width="56" height="56" rx="10" fill="${fill}" stroke="#000000" stroke-opacity="0.35" stroke-width="2"/></svg>\n`;
}

export function cageEntryText(cage: string, icon: string): string {
  const kf = Keyfile.create();
  kf.set(DESKTOP_ENTRY, 'Type', 'Application');
  kf.set(DESKTOP_ENTRY, 'Name', cageEntryName(cage));
  kf.set(
    DESKTOP_ENTRY,
    'Comment',
    `Notifications and tray icons of the programs in the cage ${cage}`,
  );
  kf.set(DESKTOP_ENTRY, 'Icon', icon);
  // Type=Application needs an Exec; a click on a notification runs it (GNOME): nothing happens.
  kf.set(DESKTOP_ENTRY, 'Exec', 'true');
  kf.set(DESKTOP_ENTRY, 'NoDisplay', 'true');
  kf.set(DESKTOP_ENTRY, 'StartupNotify', 'false');
  kf.set(DESKTOP_ENTRY, CAGE_ENTRY_KEY, cage);
  return kf.toString();
}

function paths(dataHome: string, cage: string): { entry: string; icon: string } {
  return {
    entry: path.join(dataHome, 'applications', cageEntryId(cage)),
    icon: path.join(dataHome, 'kagome', 'cage-icons', `${cage}.svg`),
  };
}

async function writeIfChanged(file: string, text: string): Promise<void> {
  const now = await fsp.readFile(file, 'utf8').catch(() => undefined);
  if (now !== text) await writeAtomically(file, text);
}

/** Writes (or brings up to date) the cage's entry and icon. */
export async function writeCageEntry(
  dataHome: string,
  cage: string,
  colour: string | undefined,
): Promise<string> {
  const p = paths(dataHome, cage);
  await writeIfChanged(p.icon, cageIconSvg(colour));
  await writeIfChanged(p.entry, cageEntryText(cage, p.icon));
  return p.entry;
}

/** Removes the cage's entry and icon; an entry without kagome's mark is somebody's own and kept. */
export async function removeCageEntry(dataHome: string, cage: string): Promise<void> {
  const p = paths(dataHome, cage);
  const text = await fsp.readFile(p.entry, 'utf8').catch(() => undefined);
  let mine = false;
  try {
    mine = text !== undefined && Keyfile.parse(text).get(DESKTOP_ENTRY, CAGE_ENTRY_KEY) === cage;
  } catch {
    // Not a desktop entry kagome wrote: left alone.
  }
  if (mine) await fsp.rm(p.entry, { force: true });
  await fsp.rm(p.icon, { force: true });
}
