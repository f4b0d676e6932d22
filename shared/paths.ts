/**
 * A path with parameters, written once: `.pattern` is the express 5 route
 * (`/v1/blinded/buckets/:epoch/:bucket`) the server registers, and calling
 * it gives the URL path a client requests (`/v1/blinded/buckets/3/17`), each
 * value percent-encoded. Server routes and client URLs both come from PATHS
 * (shared/messages.ts), so they cannot drift apart.
 */
export interface PathTemplate<Params extends string[]> {
  (...values: { [K in keyof Params]: string | number }): string;
  readonly pattern: string;
  readonly params: readonly string[];
}

export function pathTemplate<const Params extends string[]>(pattern: string, ...params: Params): PathTemplate<Params> {
  const named = [...pattern.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!);
  if (named.join() !== params.join()) throw new Error(`path ${pattern}: parameters ${named.join(', ')} are declared as ${params.join(', ')}`);
  const fill = (...values: (string | number)[]) => {
    let i = 0;
    return pattern.replace(/:[A-Za-z]+/g, () => encodeURIComponent(String(values[i++])));
  };
  return Object.assign(fill, { pattern, params }) as unknown as PathTemplate<Params>;
}

/** The express pattern of a path: the string itself, or a template's `.pattern`. */
export function routePattern(path: string | { readonly pattern: string }): string {
  return typeof path === 'string' ? path : path.pattern;
}
