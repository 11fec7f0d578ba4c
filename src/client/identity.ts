/** The client's identity: an OpenSSH Ed25519 private key (the loader is shared with the server's identity key). */
export { IdentityError, identityFromPrivateKey, loadIdentity, loadOptionalIdentity, parseIdentity, type ClientIdentity, type IdentityErrorCode } from '../server/auth/key-file.js';
