// Label-selector semantics as Kubernetes defines them (apimachinery pkg/apis/meta/v1
// LabelSelectorAsSelector, pkg/labels/selector.go Requirement.Matches): matchLabels and every
// matchExpressions operator, the empty selector, and a key that is absent versus present.
import { describe, expect, it } from 'vitest';
import { compileSelector, describeSelector, type LabelSelector, type Labels } from '../../src/policy/selector.js';

const TENANT = 'sandbox-webhook.io/tenant';

interface Case {
  readonly name: string;
  readonly selector: LabelSelector;
  readonly labels: Labels;
  readonly matches: boolean;
}

const cases: readonly Case[] = [
  // The empty selector
  { name: 'an empty selector matches a namespace without labels', selector: {}, labels: {}, matches: true },
  { name: 'an empty selector matches a namespace with labels', selector: {}, labels: { a: 'b' }, matches: true },
  {
    name: 'a selector with empty matchLabels and matchExpressions matches everything',
    selector: { matchLabels: {}, matchExpressions: [] },
    labels: { a: 'b' },
    matches: true,
  },

  // matchLabels
  { name: 'matchLabels matches when the key has exactly that value', selector: { matchLabels: { [TENANT]: 'true' } }, labels: { [TENANT]: 'true' }, matches: true },
  { name: 'matchLabels does not match another value of the key', selector: { matchLabels: { [TENANT]: 'true' } }, labels: { [TENANT]: 'false' }, matches: false },
  { name: 'matchLabels compares values case-sensitively', selector: { matchLabels: { [TENANT]: 'true' } }, labels: { [TENANT]: 'True' }, matches: false },
  { name: 'matchLabels does not match when the key is absent', selector: { matchLabels: { [TENANT]: 'true' } }, labels: { other: 'true' }, matches: false },
  { name: 'matchLabels with an empty value matches a key present with an empty value', selector: { matchLabels: { [TENANT]: '' } }, labels: { [TENANT]: '' }, matches: true },
  { name: 'matchLabels with an empty value does not match an absent key', selector: { matchLabels: { [TENANT]: '' } }, labels: {}, matches: false },
  { name: 'all matchLabels entries must hold (AND)', selector: { matchLabels: { a: '1', b: '2' } }, labels: { a: '1', b: '3' }, matches: false },
  { name: 'extra labels on the namespace do not prevent a match', selector: { matchLabels: { a: '1' } }, labels: { a: '1', b: '2', c: '3' }, matches: true },
  {
    name: 'a key inherited from Object.prototype does not count as present',
    selector: { matchLabels: { toString: 'x' } },
    labels: {},
    matches: false,
  },

  // In
  { name: 'In matches when the value is one of the values', selector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['dev', 'prod'] }] }, labels: { env: 'prod' }, matches: true },
  { name: 'In does not match a value outside the values', selector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['dev', 'prod'] }] }, labels: { env: 'test' }, matches: false },
  { name: 'In does not match when the key is absent', selector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['dev'] }] }, labels: {}, matches: false },
  { name: 'In with an empty value in values matches a key present with an empty value', selector: { matchExpressions: [{ key: 'env', operator: 'In', values: [''] }] }, labels: { env: '' }, matches: true },

  // NotIn
  { name: 'NotIn matches a value outside the values', selector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] }, labels: { env: 'dev' }, matches: true },
  { name: 'NotIn does not match a value among the values', selector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev', 'prod'] }] }, labels: { env: 'dev' }, matches: false },
  { name: 'NotIn matches when the key is absent', selector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['prod'] }] }, labels: {}, matches: true },

  // Exists
  { name: 'Exists matches when the key is present, whatever its value', selector: { matchExpressions: [{ key: TENANT, operator: 'Exists' }] }, labels: { [TENANT]: 'anything' }, matches: true },
  { name: 'Exists matches a key present with an empty value', selector: { matchExpressions: [{ key: TENANT, operator: 'Exists' }] }, labels: { [TENANT]: '' }, matches: true },
  { name: 'Exists does not match when the key is absent', selector: { matchExpressions: [{ key: TENANT, operator: 'Exists' }] }, labels: { other: 'x' }, matches: false },

  // DoesNotExist
  { name: 'DoesNotExist matches when the key is absent', selector: { matchExpressions: [{ key: TENANT, operator: 'DoesNotExist' }] }, labels: { other: 'x' }, matches: true },
  { name: 'DoesNotExist does not match a key present with an empty value', selector: { matchExpressions: [{ key: TENANT, operator: 'DoesNotExist' }] }, labels: { [TENANT]: '' }, matches: false },

  // Combinations
  {
    name: 'matchLabels and matchExpressions are ANDed: both hold',
    selector: { matchLabels: { [TENANT]: 'true' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['gold'] }] },
    labels: { [TENANT]: 'true', tier: 'gold' },
    matches: true,
  },
  {
    name: 'matchLabels and matchExpressions are ANDed: one failing expression fails the selector',
    selector: { matchLabels: { [TENANT]: 'true' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['gold'] }] },
    labels: { [TENANT]: 'true', tier: 'silver' },
    matches: false,
  },
  {
    name: 'several expressions on the same key must all hold',
    selector: {
      matchExpressions: [
        { key: 'env', operator: 'Exists' },
        { key: 'env', operator: 'NotIn', values: ['prod'] },
      ],
    },
    labels: { env: 'prod' },
    matches: false,
  },
];

describe('compileSelector', () => {
  it.each(cases)('$name', ({ selector, labels, matches }) => {
    expect(compileSelector(selector)(labels)).toBe(matches);
  });

  it('gives the same answer when called again (the compiled matcher keeps no state)', () => {
    const matcher = compileSelector({ matchExpressions: [{ key: 'env', operator: 'In', values: ['dev'] }] });
    expect([matcher({ env: 'dev' }), matcher({ env: 'prod' }), matcher({ env: 'dev' })]).toEqual([true, false, true]);
  });
});

describe('describeSelector', () => {
  it.each([
    { name: 'renders the empty selector as <everything>', selector: {}, text: '<everything>' },
    { name: 'renders matchLabels as key=value', selector: { matchLabels: { [TENANT]: 'true' } }, text: `${TENANT}=true` },
    {
      name: 'renders every operator the way kubectl writes label selectors',
      selector: {
        matchExpressions: [
          { key: 'env', operator: 'In', values: ['dev', 'prod'] },
          { key: 'tier', operator: 'NotIn', values: ['free'] },
          { key: 'team', operator: 'Exists' },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      },
      text: 'env in (dev,prod),tier notin (free),team,!legacy',
    },
  ] satisfies Array<{ name: string; selector: LabelSelector; text: string }>)('$name', ({ selector, text }) => {
    expect(describeSelector(selector)).toBe(text);
  });
});
