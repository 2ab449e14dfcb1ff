/**
 * Ranvier's pure Matrix protocol core: canonical JSON, keys and signatures,
 * room versions, event hashing/ids/redaction, identifiers, power levels and
 * the authorisation rules. No I/O happens anywhere below this module.
 */
export * from './canonical-json.js';
export * from './base64.js';
export * from './signing-key.js';
export * from './json-signing.js';
export * from './room-versions.js';
export * from './events.js';
export * from './redaction.js';
export * from './event-hashing.js';
export * from './event-signing.js';
export * from './identifiers.js';
export * from './power-levels.js';
export * from './auth-rules.js';
export * from './state-res.js';
export * from './x-matrix.js';
export * from './server-acl.js';
