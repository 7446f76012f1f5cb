import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { Keyfile } from '../../xdg/keyfile.js';

// Hand-written entries modelled on real ones (test/fixtures/desktop/real/): read and written
// back unchanged they must be byte-identical, and the parser must have understood them.

const DIR = new URL('../../../test/fixtures/desktop/real/', import.meta.url);
const names = readdirSync(DIR).filter((n) => n.endsWith('.desktop')).sort();
const bytes = (name: string): Buffer => readFileSync(new URL(name, DIR));
const DE = 'Desktop Entry';

describe('real-world desktop entries', () => {
  it('there are fixtures to check', () => {
    assert.ok(names.length >= 8, `found ${names.length}`);
  });

  for (const name of names) {
    it(`${name} round-trips byte for byte`, () => {
      const original = bytes(name);
      assert.deepEqual(Buffer.from(Keyfile.parse(original, { file: name }).toString()), original);
    });
  }

  it('understands dozens of translations with locale fallback', () => {
    const kf = Keyfile.parse(bytes('org.example.Browser.desktop'));
    const translations = kf.keys(DE).filter((k) => k.key === 'Name' && k.locale !== undefined);
    assert.ok(translations.length >= 40, `${translations.length} translations`);
    assert.equal(kf.getLocaleString(DE, 'Name', ['de_DE.UTF-8']), kf.get(DE, 'Name', 'de'));
    assert.equal(kf.getLocaleString(DE, 'Name', ['xx_YY']), 'Example Browser');
    assert.ok((kf.getList(DE, 'Actions') ?? []).every((a) => a === '' || kf.hasGroup(`Desktop Action ${a}`)));
  });

  it('keeps an escaped \\; inside one list item', () => {
    const kf = Keyfile.parse(bytes('org.example.ImageEditor.desktop'));
    assert.deepEqual(kf.getList(DE, 'X-Example-OpenFilters'), ['Images (*.png;*.jpg;*.webp)', 'Raw photos (*.cr2;*.nef;*.dng)', 'All files (*)']);
  });

  it('changing one value changes only its line', () => {
    const original = bytes('org.example.Browser.desktop').toString('utf8');
    const kf = Keyfile.parse(original);
    kf.set(DE, 'Name', 'Changed', 'fr');
    const before = original.split('\n');
    const after = kf.toString().split('\n');
    assert.equal(after.length, before.length);
    const differing = before.map((l, i) => (l === after[i] ? -1 : i)).filter((i) => i >= 0);
    assert.deepEqual(differing.map((i) => after[i]), ['Name[fr]=Changed']);
  });
});
