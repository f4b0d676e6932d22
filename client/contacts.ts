/**
 * A phone's contact list as a file: what `pcd sync` and the library read.
 * The numbers come back as written; shared/e164.ts normalizes them.
 */

/** Numbers of a contact file: vCard TEL lines, or one number per line (# comments, blank lines ignored). */
export function parseContactFile(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (/^\s*BEGIN:VCARD/im.test(text)) {
    // vCard 2.1/3.0/4.0: unfold continuation lines first (RFC 6350 §3.2).
    const unfolded = text.replace(/\r?\n[ \t]/g, '').split(/\r?\n/);
    const out: string[] = [];
    for (const line of unfolded) {
      const m = /^(?:[A-Za-z0-9-]+\.)?TEL(?:;[^:]*)?:(.*)$/i.exec(line.trim());
      if (m) out.push(m[1]!.trim().replace(/^tel:/i, '').split(';', 1)[0]!.trim());
    }
    return out;
  }
  return lines.map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}
