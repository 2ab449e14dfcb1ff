/**
 * Which servers this one federates with: the master switch and the
 * operator's allow list (server ACLs of rooms are checked elsewhere, per room).
 */
import type { Config } from '../config/config.js';
import { forbidden } from '../server/errors.js';

export class FederationPolicy {
  private readonly allow: Set<string> | undefined;

  constructor(private readonly config: Config) {
    const names = config.federation_allow_list.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
    this.allow = names.length > 0 ? new Set(names) : undefined;
  }

  get enabled(): boolean {
    return this.config.federation_enabled;
  }

  /** May we talk to `serverName` (in either direction)? Ourselves always. */
  allows(serverName: string): boolean {
    if (serverName.toLowerCase() === this.config.server_name.toLowerCase()) return true;
    if (!this.config.federation_enabled) return false;
    return this.allow === undefined || this.allow.has(serverName.toLowerCase());
  }

  /** Throw 403 M_FORBIDDEN unless `serverName` is allowed. */
  check(serverName: string): void {
    if (!this.allows(serverName)) throw forbidden(`Federation with ${serverName} is not allowed by this server`);
  }
}
