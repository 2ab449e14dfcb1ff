/**
 * m.room.server_acl evaluation (client-server API, "Server Access Control
 * Lists"): IP literals first, then deny, then allow; a server no entry
 * allows is denied. Globs use `*` (any run of characters) and `?` (one
 * character) and, like the other servers, ignore case. Ports are stripped.
 */
import { isIP } from 'node:net';

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** The host part of a server name (no port; IPv6 without brackets). */
function hostOf(serverName: string): string {
  if (serverName.startsWith('[')) {
    const end = serverName.indexOf(']');
    return end > 0 ? serverName.slice(1, end) : serverName;
  }
  const colon = serverName.lastIndexOf(':');
  return colon > 0 && serverName.indexOf(':') === colon ? serverName.slice(0, colon) : serverName;
}

/** Whether the ACL content (undefined: no ACL in the room) lets `serverName` take part. */
export function serverAclAllows(content: Record<string, unknown> | undefined, serverName: string): boolean {
  if (!content) return true;
  const host = hostOf(serverName);
  const allowIpLiterals = content.allow_ip_literals !== false;
  if (!allowIpLiterals && isIP(host) !== 0) return false;
  const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  if (list(content.deny).some((g) => globToRegExp(g).test(host))) return false;
  return list(content.allow).some((g) => globToRegExp(g).test(host));
}
