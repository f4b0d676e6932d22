/**
 * The page builds its DOM with createElement and textContent only: data
 * never goes through innerHTML, and no element gets a style attribute (the
 * server's CSP allows neither inline style nor inline script).
 */

export type Child = Node | string | number | null | undefined | false;
export type Props = Record<string, string | number | boolean | undefined>;

/**
 * `h('li', { class: 'answer', 'data-design': 'plain' }, 'text', child)`:
 * `class` sets className, `true` sets an empty attribute, `false` and
 * undefined set none; strings and numbers become text nodes.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props | null = null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === false) continue;
      if (k === 'class') el.className = String(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** The element with this id, of the expected class: a page whose HTML lacks it is a build error, said plainly. */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html has no <${type.name}> #${id}`);
  return el;
}

/** Inline code in running text. */
export function code(text: string): HTMLElement {
  return h('code', null, text);
}
