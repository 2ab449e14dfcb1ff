/**
 * Refuse to open a database that a newer Ranvier has migrated. Its schema
 * may have changed in ways this version does not know (new constraints, moved
 * data); writing to it could corrupt it for the newer version too.
 */
export class SchemaTooNewError extends Error {
  constructor(
    public readonly databaseVersion: number,
    public readonly knownVersion: number,
  ) {
    super(
      `The database was written by a newer version of Ranvier (schema version ${databaseVersion}; this version knows up to ${knownVersion}). ` +
        'Upgrade Ranvier, or restore a backup made before the upgrade; refusing to start so the database is not damaged.',
    );
    this.name = 'SchemaTooNewError';
  }
}

/** Throw SchemaTooNewError when `applied` holds a version above every known migration. */
export function assertSchemaNotNewer(applied: Iterable<number>, known: readonly { version: number }[]): void {
  const knownMax = Math.max(0, ...known.map((m) => m.version));
  const appliedMax = Math.max(0, ...applied);
  if (appliedMax > knownMax) throw new SchemaTooNewError(appliedMax, knownMax);
}
