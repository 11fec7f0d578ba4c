import { GateError } from '../errors.js';

/** createInstance found a record with the same (principal, id): the API maps it to 409. */
export class DuplicateInstanceError extends GateError {
  constructor(principal: string, id: string) {
    super('GATE_DUPLICATE_INSTANCE', `instance ${id} already exists for principal ${principal}; choose another instance id or delete the existing instance first`);
  }
}

/** A value handed to the store is malformed (e.g. a module hash that is not lower-case sha256 hex). A caller bug, not user input the API should have let through. */
export class StoreInputError extends GateError {
  constructor(message: string) {
    super('GATE_STORE_INVALID_INPUT', message);
  }
}

/** The inventory was used after close(). */
export class InventoryClosedError extends GateError {
  constructor() {
    super('GATE_INVENTORY_CLOSED', 'the inventory has been closed; open it again before using it');
  }
}

/** The inventory file is not an SQLite database, or not one written by Gate. */
export class InventoryCorruptError extends GateError {
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('GATE_INVENTORY_CORRUPT', `inventory ${path} is not a usable Gate inventory database (${detail}); restore it from a backup or move it away to start with an empty inventory`, options);
  }
}

/** The inventory was written by a newer Gate (its schema version is higher than this build knows). */
export class InventoryTooNewError extends GateError {
  constructor(path: string, found: number, supported: number) {
    super('GATE_INVENTORY_TOO_NEW', `inventory ${path} has schema version ${found}, but this Gate supports up to ${supported}; upgrade Gate or use an inventory written by this version`);
  }
}

/** A blob name does not fit the store's naming rule; refusing it keeps names from escaping the directory. */
export class InvalidBlobNameError extends GateError {
  constructor(name: string, rule: string) {
    super('GATE_INVALID_BLOB_NAME', `invalid blob name ${JSON.stringify(name.length > 100 ? name.slice(0, 100) + '…' : name)}: ${rule}`);
  }
}

/** putVerified: the content does not hash to the name it was meant to be stored under. */
export class BlobHashMismatchError extends GateError {
  constructor(expected: string, actual: string) {
    super('GATE_BLOB_HASH_MISMATCH', `content hashes to sha256 ${actual}, not the expected ${expected}; the upload is corrupt or the wrong hash was given`);
  }
}

/** Another live Gate process holds the state directory. */
export class StateDirLockedError extends GateError {
  constructor(root: string, holder: string) {
    super('GATE_STATE_DIR_LOCKED', `state directory ${root} is in use by ${holder}; stop that server, or give this one another state directory`);
  }
}

/** The inventory database could not be opened for a reason other than its content (permissions, a directory in the way, a full disk). */
export class InventoryOpenError extends GateError {
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('GATE_INVENTORY_OPEN', `cannot open inventory ${path}: ${detail}; check that the path is a writable file in a writable directory`, options);
  }
}

/** inventory.dsn is not a PostgreSQL URL. The message never repeats the DSN: it may hold a password. */
export class InventoryDsnError extends GateError {
  constructor(detail: string) {
    super('GATE_INVENTORY_DSN', `inventory.dsn ${detail}; write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (or postgres:///DATABASE?host=/SOCKET/DIR)`);
  }
}

/**
 * The PostgreSQL inventory could not be opened: the server is unreachable,
 * refuses the login, lacks the database, or the user may not create Gate's
 * tables. `where` names user, host, port and database, never the password.
 */
export class InventoryDatabaseError extends GateError {
  constructor(where: string, detail: string, options?: { cause?: unknown }) {
    super(
      'GATE_INVENTORY_OPEN',
      `cannot open the PostgreSQL inventory at ${where}: ${detail}; check that PostgreSQL runs there and that inventory.dsn names the right host, port, database, user and password (the user must be allowed to create tables in that database)`,
      options,
    );
  }
}
