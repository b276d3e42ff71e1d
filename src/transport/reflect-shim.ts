/**
 * The smallest Reflect metadata polyfill that @peculiar/x509 needs.
 *
 * @peculiar/x509 registers its algorithms with tsyringe, and tsyringe refuses
 * to load unless `Reflect.getMetadata` exists (it normally comes from the
 * `reflect-metadata` package, which we do not depend on). tsyringe only calls
 * getMetadata, getOwnMetadata and defineMetadata, and x509's classes carry no
 * decorator metadata, so a WeakMap-backed version of those three is enough.
 * It installs nothing when a real polyfill is already present.
 *
 * This module must be evaluated before "@peculiar/x509": import x509 only via
 * ./x509.ts, which imports this first.
 */
type MetaKey = unknown;
type PropKey = string | symbol | undefined;

interface ReflectWithMetadata {
  getMetadata?: (key: MetaKey, target: object, prop?: PropKey) => unknown;
  getOwnMetadata?: (key: MetaKey, target: object, prop?: PropKey) => unknown;
  defineMetadata?: (key: MetaKey, value: unknown, target: object, prop?: PropKey) => void;
}

const store = new WeakMap<object, Map<PropKey, Map<MetaKey, unknown>>>();

function own(target: object, prop: PropKey, create: boolean): Map<MetaKey, unknown> | undefined {
  let byProp = store.get(target);
  if (!byProp) {
    if (!create) return undefined;
    byProp = new Map();
    store.set(target, byProp);
  }
  let meta = byProp.get(prop);
  if (!meta && create) {
    meta = new Map();
    byProp.set(prop, meta);
  }
  return meta;
}

const R = Reflect as unknown as ReflectWithMetadata;
if (typeof R.getMetadata !== "function") {
  R.getOwnMetadata = (key, target, prop) => own(target, prop, false)?.get(key);
  R.defineMetadata = (key, value, target, prop) => {
    own(target, prop, true)?.set(key, value);
  };
  R.getMetadata = (key, target, prop) => {
    // Like reflect-metadata: walk the prototype chain.
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const meta = own(t, prop, false);
      if (meta?.has(key)) return meta.get(key);
    }
    return undefined;
  };
}

export {};
