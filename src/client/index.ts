export * from './client.js';
export * from './errors.js';
export * from './types.js';
export { loadIdentity, loadOptionalIdentity, IdentityError, type ClientIdentity } from './identity.js';
export { makeToken } from './token.js';
