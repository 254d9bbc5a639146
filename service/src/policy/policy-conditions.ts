// The conditions a policy rule can ask of an identity, one row each: its key in the policy file, how its
// value is read and what the file is told when it is wrong, how `decide` checks it and what a 403 says,
// and how an allow (and so `idgate explain`) describes it. The Condition type, the parser (policy-file.ts),
// `decide` and its explanations (policy.ts) all walk this table, so a new condition is one new row.
import type { Credential, Identity } from '../identity.js';

/** What a 403 reports an unmet part as: a token told about `scopes` gets RFC 6750 insufficient_scope. */
export type UnmetKind = 'via' | 'issuers' | 'groups' | 'roles' | 'scopes' | 'emails' | 'subjects' | 'clients';

/**
 * How decide checks one condition. Methods, not function-valued fields: TypeScript then lets one list hold
 * the rows of every value type (each row is only ever given its own field's value).
 */
export interface ConditionCheck<V> {
  holds(wanted: V, identity: Identity): boolean;
  /** The 403 reason when it does not hold. */
  unmet(wanted: V): string;
  readonly reportedAs: UnmetKind;
  /**
   * Lowest first; a 403 names the first part that fails, so who the caller is (issuer, client, subject)
   * comes before what it holds: a wrong client is not told to get a scope.
   */
  readonly precedence: number;
}

export interface ConditionRow<V> {
  /** As written in the policy file. */
  readonly key: string;
  /** The value as plain data (scalars and lists of them); undefined when it is not a valid value. */
  parse(value: unknown): V | undefined;
  /** The problem reported when parse refuses, after "allow.KEY: ". */
  readonly expected: string;
  /** The allow reason's part for it, after "has ". */
  describe(wanted: V): string;
  /**
   * It says which identities the condition is about rather than what they hold: it leads the description,
   * and decide applies a default when it is absent (the rule's credentials, the primary issuer).
   */
  readonly gate?: true;
  /** Only a bearer token can satisfy it: a rule naming it accepts tokens (acceptedCredentials). */
  readonly forTokens?: true;
  /** Absent for `via`: which credential a condition is for depends on the rule too (decide works it out). */
  readonly check?: ConditionCheck<V>;
}

type StringList = readonly string[];

/** For inference only: each row keeps its own value type, which the Condition type below reads. */
const row = <V>(r: ConditionRow<V>): ConditionRow<V> => r;

/** The precedence of what an identity holds (groups, roles, scopes, emails): after who it is. */
const CLAIMS = 4;
const anyOf = (wanted: StringList, held: StringList) => wanted.some((w) => held.includes(w));
const allOf = (wanted: StringList, held: StringList) => wanted.every((w) => held.includes(w));
const or = (values: StringList) => values.join(' or ');
const and = (values: StringList) => values.join(' and ');

function nonEmptyStrings(value: unknown): StringList | undefined {
  return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string' && v !== '') ? (value as string[]) : undefined;
}
const listExpected = (key: string, example = 'admins') => `expected a non-empty list of strings (e.g. ${key}: [${example}])`;

interface ClaimList {
  readonly key: string;
  /** "group" in "has group a or b". */
  readonly noun: string;
  /** any: "groups: [a, b]" holds with either; all: "groups_all: [a, b]" with both. */
  readonly match: 'any' | 'all';
  readonly held: (identity: Identity) => StringList;
  readonly reportedAs: UnmetKind;
  readonly forTokens?: true;
}

/** A condition on a list the identity holds (groups, roles, scopes), named in its 403. */
function claimList({ key, noun, match, held, reportedAs, forTokens }: ClaimList): ConditionRow<StringList> {
  const all = match === 'all';
  const describe = (wanted: StringList) => `${noun} ${all ? and(wanted) : or(wanted)}`;
  return {
    key,
    parse: nonEmptyStrings,
    expected: listExpected(key),
    describe,
    ...(forTokens ? { forTokens } : {}),
    check: {
      holds: all ? (wanted, identity) => allOf(wanted, held(identity)) : (wanted, identity) => anyOf(wanted, held(identity)),
      unmet: (wanted) => `needs ${describe(wanted)}`,
      reportedAs,
      precedence: CLAIMS,
    },
  };
}

const lowerCased = (value: unknown) => nonEmptyStrings(value)?.map((v) => v.toLowerCase());

function isIssuer(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && !url.search && !url.hash;
  } catch {
    return false;
  }
}

/**
 * In this order the file's keys are listed in its error messages; descriptions put the gates first, and
 * decide tries the checks by precedence.
 */
export const CONDITIONS = {
  via: row<Credential>({
    key: 'via',
    parse: (value) => (value === 'session' || value === 'token' ? value : undefined),
    expected: 'expected "session" or "token"',
    describe: (via) => (via === 'session' ? 'signed-in session' : 'bearer token'),
    gate: true,
  }),
  groups: claimList({ key: 'groups', noun: 'group', match: 'any', held: (identity) => identity.groups, reportedAs: 'groups' }),
  groupsAll: claimList({ key: 'groups_all', noun: 'groups', match: 'all', held: (identity) => identity.groups, reportedAs: 'groups' }),
  roles: claimList({ key: 'roles', noun: 'role', match: 'any', held: (identity) => identity.roles, reportedAs: 'roles' }),
  rolesAll: claimList({ key: 'roles_all', noun: 'roles', match: 'all', held: (identity) => identity.roles, reportedAs: 'roles' }),
  scopes: claimList({ key: 'scopes', noun: 'scope', match: 'any', held: (identity) => identity.scopes, reportedAs: 'scopes', forTokens: true }),
  scopesAll: claimList({ key: 'scopes_all', noun: 'scopes', match: 'all', held: (identity) => identity.scopes, reportedAs: 'scopes', forTokens: true }),
  // Stored lower-case, so that addresses and domains compare case-insensitively. The 403 does not list
  // the addresses: a caller is not told whose email would get in.
  emails: row<StringList>({
    key: 'emails',
    parse: lowerCased,
    expected: listExpected('emails'),
    describe: () => 'a listed email',
    check: {
      holds: (wanted, identity) => {
        const email = identity.email?.toLowerCase();
        return !!email && wanted.includes(email);
      },
      unmet: () => 'needs one of the listed emails',
      reportedAs: 'emails',
      precedence: CLAIMS,
    },
  }),
  emailDomains: row<StringList>({
    key: 'email_domains',
    parse: lowerCased,
    expected: listExpected('email_domains', 'example.com'),
    describe: (domains) => `an email at ${or(domains)}`,
    check: {
      // A domain, not a suffix: example.com does not cover x@evilexample.com nor x@sub.example.com.
      holds: (domains, identity) => {
        const email = identity.email?.toLowerCase();
        return !!email && domains.some((d) => email.endsWith(`@${d}`));
      },
      unmet: (domains) => `needs an email at ${or(domains)}`,
      reportedAs: 'emails',
      precedence: CLAIMS,
    },
  }),
  subjects: row<StringList>({
    key: 'subjects',
    parse: nonEmptyStrings,
    expected: listExpected('subjects'),
    describe: () => 'a listed subject',
    check: { holds: (wanted, identity) => wanted.includes(identity.subject), unmet: () => 'needs one of the listed subjects', reportedAs: 'subjects', precedence: 3 },
  }),
  clients: row<StringList>({
    key: 'clients',
    parse: nonEmptyStrings,
    expected: listExpected('clients'),
    describe: (clients) => `client ${or(clients)}`,
    forTokens: true,
    check: {
      holds: (wanted, identity) => !!identity.clientId && wanted.includes(identity.clientId),
      unmet: (clients) => `needs client ${or(clients)}`,
      reportedAs: 'clients',
      precedence: 2,
    },
  }),
  issuers: row<StringList>({
    key: 'issuers',
    // Compared exactly with the token's or session's `iss`, so written exactly as the issuer writes it.
    parse: (value) => {
      const list = nonEmptyStrings(value);
      return list?.every(isIssuer) ? list : undefined;
    },
    expected: "expected a non-empty list of issuer URLs, exactly as in the tokens' iss (e.g. issuers: [https://example.okta.com/oauth2/default])",
    describe: (issuers) => `issuer ${or(issuers)}`,
    gate: true,
    check: { holds: (wanted, identity) => wanted.includes(identity.issuer), unmet: (issuers) => `needs issuer ${or(issuers)}`, reportedAs: 'issuers', precedence: 1 },
  }),
};

type ValueOf<R> = R extends ConditionRow<infer V> ? V : never;

/**
 * Conditions over an identity, one optional field per row; all the given ones must hold. A list means
 * "any of" unless its name says "_all". Which credential a condition is for: `via` when given; a bearer
 * token when it has a `forTokens` part (scopes, scopes_all, clients); else a browser session, or what the
 * rule's `accept` says. Without `issuers`, only identities from the primary issuer (IDGATE_ISSUER) can
 * satisfy it.
 */
export type Condition = { readonly [F in keyof typeof CONDITIONS]?: ValueOf<(typeof CONDITIONS)[F]> };

export type ConditionField = keyof Condition;

/** A row with the field of Condition it fills. */
export interface ConditionEntry {
  readonly field: ConditionField;
  readonly row: ConditionRow<Credential | StringList>;
}

/** In table order. */
export const CONDITION_ENTRIES: readonly ConditionEntry[] = Object.freeze(
  (Object.keys(CONDITIONS) as ConditionField[]).map((field) => Object.freeze({ field, row: CONDITIONS[field] })),
);

/**
 * What decide needs of one condition, worked out from the table once per condition rather than on every
 * request: the check walks only the parts the condition has, and an allow's reason is ready-made.
 */
export interface ConditionPlan {
  /** Only a bearer token can satisfy it: `via: token`, or a part only tokens have. */
  readonly tokenOnly: boolean;
  /** The credentials it is for by its own say; undefined when that is the rule's to say (its `accept`). */
  readonly credentials: readonly Credential[] | undefined;
  /** The parts it has that decide checks, by precedence (then table order). */
  readonly checks: readonly { readonly check: ConditionCheck<ConditionValue>; readonly wanted: ConditionValue }[];
  /** The allow reason: the gates (which credential, which issuer) first, then the table's order. */
  readonly reason: string;
}

type ConditionValue = NonNullable<Condition[ConditionField]>;

// Conditions are frozen data, so a plan made once stays right, and decide stays a function of its
// arguments. Keyed by the condition itself: the parser plans each condition at load, and one built by hand
// (a test) is planned on first use.
const plans = new WeakMap<Condition, ConditionPlan>();

export function planOf(c: Condition): ConditionPlan {
  let plan = plans.get(c);
  if (!plan) {
    plan = makePlan(c);
    plans.set(c, plan);
  }
  return plan;
}

const BY_PRECEDENCE = CONDITION_ENTRIES.filter((e) => e.row.check).sort((a, b) => a.row.check!.precedence - b.row.check!.precedence);
const GATES_FIRST = [...CONDITION_ENTRIES.filter((e) => e.row.gate), ...CONDITION_ENTRIES.filter((e) => !e.row.gate)];
const JUST_SESSION: readonly Credential[] = Object.freeze(['session']);
const JUST_TOKEN: readonly Credential[] = Object.freeze(['token']);

function makePlan(c: Condition): ConditionPlan {
  const present = (entries: readonly ConditionEntry[]) => entries.filter((e) => c[e.field] !== undefined);
  const tokenOnly = c.via !== undefined ? c.via === 'token' : present(CONDITION_ENTRIES).some((e) => e.row.forTokens);
  const parts = present(GATES_FIRST).map(({ field, row }) => row.describe(c[field]!));
  return Object.freeze({
    tokenOnly,
    credentials: tokenOnly ? JUST_TOKEN : c.via === 'session' ? JUST_SESSION : undefined,
    checks: Object.freeze(present(BY_PRECEDENCE).map(({ field, row }) => Object.freeze({ check: row.check!, wanted: c[field]! }))),
    reason: parts.length ? `has ${parts.join(', ')}` : 'authenticated',
  });
}
