// Thunar's custom actions ($XDG_CONFIG_HOME/Thunar/uca.xml): kagome's <action> elements merged
// into a file that belongs to the user and to Thunar's own editor.
//
// Why a scanner here and not an XML library: what this needs is the byte offsets of the
// root's <action> children, so that kagome's can be cut out and new ones put in while every
// other byte (the user's actions, comments, the DOCTYPE Thunar's system file carries, the
// indentation) stays as it was. DOM libraries re-serialize the document, which loses exactly
// that; a SAX tokenizer would still leave the span bookkeeping to us, for the price of a
// dependency. The file is Thunar's flat list of small elements, and anything this scanner does
// not understand is refused untouched, never guessed at.

import { FileError, KagomeError } from '../lib/errors.js';

/** What Thunar itself starts a new uca.xml with. */
export const EMPTY_UCA = '<?xml version="1.0" encoding="UTF-8"?>\n<actions>\n</actions>\n';

export interface UcaAction {
  uniqueId: string;
  name: string;
  description: string;
  icon: string;
  command: string;
}

interface Element {
  name: string;
  start: number;
  /** After the start tag's '>'. */
  openEnd: number;
  /** Where the end tag starts; openEnd for <x/>. */
  closeStart: number;
  /** After the element. */
  end: number;
  children: Element[];
  /** Character data directly inside, entities decoded. */
  text: string;
  /** Written <x/>. */
  empty: boolean;
}

// XML 1.0 Char, minus what only a character reference could carry (CR) and what cannot be
// written at all (other C0 controls, U+FFFE, U+FFFF): GMarkup rejects those.
const NOT_XML_CHAR = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/** Text for an XML element's content (kagome writes no attributes, so quotes stay as they are). */
export function xmlEscape(s: string): string {
  const bad = NOT_XML_CHAR.exec(s);
  if (bad)
    throw new KagomeError(
      'InvalidArgument',
      `cannot write the control character U+${bad[0].charCodeAt(0).toString(16).padStart(4, '0')} into XML (in ${JSON.stringify(s)})`,
    );
  // A raw CR would come back as LF (XML normalizes line ends): only a reference keeps it.
  return s.replace(
    /[&<>\r]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' })[c]!,
  );
}

/** One <action> as Thunar writes them: at the start of a line, one child per line. */
export function renderUcaAction(a: UcaAction): string {
  const el = (name: string, value: string): string => `\t<${name}>${xmlEscape(value)}</${name}>\n`;
  return (
    '<action>\n' +
    el('icon', a.icon) +
    el('name', a.name) +
    el('unique-id', a.uniqueId) +
    el('command', a.command) +
    el('description', a.description) +
    el('patterns', '*') +
    // Every kind of file Thunar tells apart, never <directories/>: a cage opens files.
    '\t<other-files/>\n\t<text-files/>\n\t<image-files/>\n\t<audio-files/>\n\t<video-files/>\n' +
    '</action>'
  );
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const ENTITY = /&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+)|([A-Za-z_][\w.-]*));/g;
const BARE_AMP = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z_][\w.-]*);)/;
const START_TAG =
  /<([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_:][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
const END_TAG = /<\/([A-Za-z_][\w.:-]*)\s*>/y;

function decode(s: string): string {
  // Entities from a DTD are kept as written: no kagome id contains one.
  return s.replace(
    ENTITY,
    (m, named: string | undefined, dec: string | undefined, hex: string | undefined) => {
      if (named) return PREDEFINED[named]!;
      const code = dec ? parseInt(dec, 10) : hex ? parseInt(hex, 16) : NaN;
      return code <= 0x10ffff ? String.fromCodePoint(code) : m;
    },
  );
}

function lineOf(text: string, at: number): number {
  let line = 1;
  for (let i = 0; i < at && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

class Scanner {
  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {}

  fail(at: number, reason: string): FileError {
    return new FileError(
      'Failed',
      { file: this.file, line: lineOf(this.text, at) },
      `${reason}. kagome did not change the file: correct it, or move it away to have kagome start a new one, and run 'kagome integrate file-managers' again`,
    );
  }

  private find(what: string, from: number, at: number, construct: string): number {
    const i = this.text.indexOf(what, from);
    if (i < 0) throw this.fail(at, `${construct} is never closed with ${JSON.stringify(what)}`);
    return i;
  }

  /** After a <!DOCTYPE ...>, internal subset included (Thunar's system file has one). */
  private skipDoctype(at: number): number {
    const t = this.text;
    let subset = false;
    for (let i = at + '<!DOCTYPE'.length; i < t.length; i++) {
      const c = t[i];
      if (c === '"' || c === "'") i = this.find(c, i + 1, at, 'a quoted string in <!DOCTYPE');
      else if (subset && t.startsWith('<!--', i)) i = this.find('-->', i + 4, i, 'a comment') + 2;
      else if (c === '[' && !subset) subset = true;
      else if (c === ']' && subset) subset = false;
      else if (c === '>' && !subset) return i + 1;
    }
    throw this.fail(at, '<!DOCTYPE is never closed');
  }

  /** The root element, with the whole tree under it. */
  parse(): Element {
    const t = this.text;
    const stack: Element[] = [];
    let root: Element | undefined;
    let i = 0;
    while (i < t.length) {
      const lt = t.indexOf('<', i);
      const stop = lt < 0 ? t.length : lt;
      if (stop > i) {
        const chunk = t.slice(i, stop);
        const top = stack[stack.length - 1];
        if (!top) {
          if (chunk.trim() !== '')
            throw this.fail(
              i,
              `text ${JSON.stringify(chunk.trim().slice(0, 40))} outside the <actions> element`,
            );
        } else {
          if (BARE_AMP.test(chunk))
            throw this.fail(i, 'an "&" that starts no entity (write it as &amp;)');
          top.text += decode(chunk);
        }
      }
      if (lt < 0) break;
      if (t.startsWith('<!--', lt)) {
        i = this.find('-->', lt + 4, lt, 'a comment') + 3;
      } else if (t.startsWith('<?', lt)) {
        i = this.find('?>', lt + 2, lt, 'a processing instruction') + 2;
      } else if (t.startsWith('<![CDATA[', lt)) {
        const top = stack[stack.length - 1];
        if (!top) throw this.fail(lt, 'CDATA outside the <actions> element');
        const e = this.find(']]>', lt + 9, lt, 'a CDATA section');
        top.text += t.slice(lt + 9, e);
        i = e + 3;
      } else if (t.startsWith('<!DOCTYPE', lt)) {
        if (root || stack.length) throw this.fail(lt, '<!DOCTYPE after the root element starts');
        i = this.skipDoctype(lt);
      } else if (t.startsWith('</', lt)) {
        END_TAG.lastIndex = lt;
        const m = END_TAG.exec(t);
        const top = stack.pop();
        if (!m) throw this.fail(lt, 'an end tag that cannot be read');
        if (!top || top.name !== m[1])
          throw this.fail(lt, `</${m[1]}> closes ${top ? `<${top.name}>` : 'nothing'}`);
        top.closeStart = lt;
        top.end = lt + m[0].length;
        i = top.end;
      } else {
        START_TAG.lastIndex = lt;
        const m = START_TAG.exec(t);
        if (!m)
          throw this.fail(lt, `a tag that cannot be read: ${JSON.stringify(t.slice(lt, lt + 40))}`);
        const after = lt + m[0].length;
        const el: Element = {
          name: m[1]!,
          start: lt,
          openEnd: after,
          closeStart: after,
          end: after,
          children: [],
          text: '',
          empty: m[3] === '/',
        };
        const top = stack[stack.length - 1];
        if (top) top.children.push(el);
        else if (root)
          throw this.fail(
            lt,
            `a second root element <${el.name}>; the file must hold one <actions> element`,
          );
        else root = el;
        if (!el.empty) stack.push(el);
        i = after;
      }
    }
    const open = stack[stack.length - 1];
    if (open) throw this.fail(open.start, `<${open.name}> is never closed`);
    if (!root) throw this.fail(0, 'there is no <actions> element');
    if (root.name !== 'actions')
      throw this.fail(root.start, `the root element is <${root.name}>, not <actions>`);
    return root;
  }
}

export interface UcaMerge {
  text: string;
  /** unique-ids of the <action>s taken out. */
  removed: string[];
}

function uniqueId(action: Element): string {
  return action.children.find((c) => c.name === 'unique-id')?.text.trim() ?? '';
}

/**
 * Take out the <action>s whose unique-id `drop` accepts, and add `add` (rendered actions) at
 * the end. An action that had lines of its own goes with them, and new ones are written as
 * whole lines when </actions> starts its line, so removing what was added gives back the
 * file byte for byte. Throws a FileError, naming the line, for a file that is not safe to edit.
 */
export function mergeUca(
  text: string,
  file: string,
  drop: (uniqueId: string) => boolean,
  add: readonly string[],
): UcaMerge {
  const root = new Scanner(text, file).parse();
  const edits: { at: number; end: number; insert: string }[] = [];
  const removed: string[] = [];
  for (const c of root.children) {
    if (c.name !== 'action' || !drop(uniqueId(c))) continue;
    removed.push(uniqueId(c));
    const lineStart = text.lastIndexOf('\n', c.start - 1) + 1;
    let lineEnd = text.indexOf('\n', c.end);
    if (lineEnd < 0) lineEnd = text.length;
    const ownLines =
      text.slice(lineStart, c.start).trim() === '' && text.slice(c.end, lineEnd).trim() === '';
    edits.push(
      ownLines
        ? { at: lineStart, end: Math.min(lineEnd + 1, text.length), insert: '' }
        : { at: c.start, end: c.end, insert: '' },
    );
  }
  if (add.length > 0) {
    if (root.empty) {
      // <actions/>: it needs an end tag to hold anything.
      edits.push({
        at: root.start,
        end: root.end,
        insert: '<actions>\n' + add.map((a) => a + '\n').join('') + '</actions>',
      });
    } else {
      const lineStart = text.lastIndexOf('\n', root.closeStart - 1) + 1;
      const ownLine =
        lineStart > root.openEnd && text.slice(lineStart, root.closeStart).trim() === '';
      edits.push(
        ownLine
          ? { at: lineStart, end: lineStart, insert: add.map((a) => a + '\n').join('') }
          : { at: root.closeStart, end: root.closeStart, insert: add.join('') },
      );
    }
  }
  // From the end, so earlier offsets stay valid; an insertion sorts before a cut ending there.
  edits.sort((a, b) => b.at - a.at || b.end - a.end);
  let out = text;
  for (const e of edits) out = out.slice(0, e.at) + e.insert + out.slice(e.end);
  return { text: out, removed };
}
