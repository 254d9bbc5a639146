// Values worth computing once per object: an identity's rendered headers or SPOE actions live as long as
// the object the session cache or the token cache holds, and go with it (a WeakMap keeps nothing alive).

/** `compute`, remembered per key object: the same value again for the same object, computed at its first use. */
export function oncePerObject<K extends object, V>(compute: (key: K) => V): (key: K) => V {
  const values = new WeakMap<K, V>();
  return (key) => {
    let value = values.get(key);
    if (value === undefined) {
      value = compute(key);
      values.set(key, value);
    }
    return value;
  };
}
