/**
 * TLS for gate-server (spec extensions.md, "TLS and ACME"): a certificate
 * chain and its key from PEM files. The server's identity is then
 * `https://<authority>/gate-0/`. Certificates come only from files: there is
 * no ACME (autocert); README lists it as not done.
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { GateError } from '../errors.js';

export interface TlsFiles {
  /** PEM certificate chain, the server's own certificate first. */
  cert: Buffer;
  /** PEM private key of that certificate. */
  key: Buffer;
}

/** The TLS configuration cannot be used (missing files, a key that does not fit the certificate…). */
export class TlsConfigError extends GateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATE_TLS_CONFIG', message, options);
  }
}

/** Reads and checks the PEM files of `http.tls.certfile` and `http.tls.keyfile`. */
export async function loadTlsFiles(certFile: string, keyFile: string): Promise<TlsFiles> {
  const read = async (key: string, file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (e) {
      throw new TlsConfigError(`${key}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
  };
  const files = { cert: await read('http.tls.certfile', certFile), key: await read('http.tls.keyfile', keyFile) };
  try {
    // Fails on malformed PEM and on a key that does not belong to the certificate.
    createSecureContext(files);
  } catch (e) {
    throw new TlsConfigError(`http.tls.certfile ${certFile} and http.tls.keyfile ${keyFile} cannot be used: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return files;
}
