/** A value read from the host, or the reason it could not be. */
export type Fact<T> =
  | { readonly known: true; readonly value: T; readonly source: string }
  | { readonly known: false; readonly reason: string; readonly source: string };

/** A known fact. */
export function known<T>(value: T, source: string): Fact<T> {
  return { known: true, value, source };
}

/** An unknown fact with its reason. */
export function unknown<T>(reason: string, source: string): Fact<T> {
  return { known: false, reason, source };
}

/** The value of a fact, or `fallback` when unknown. */
export function valueOr<T, F>(fact: Fact<T>, fallback: F): T | F {
  return fact.known ? fact.value : fallback;
}
