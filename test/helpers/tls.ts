/**
 * Throwaway TLS material for tests: a private CA and server certificates it
 * signs, made with the openssl CLI in a temporary directory. Certificates
 * carry subjectAltName entries for the given DNS names and for 127.0.0.1 and
 * ::1, so a client may connect to loopback while verifying a server name.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  /** PEM certificate. */
  cert: string;
  /** PEM private key. */
  key: string;
  certFile: string;
  keyFile: string;
}

export interface TestCa {
  /** PEM certificate of the CA (what a client trusts). */
  cert: string;
  certFile: string;
  /** Issue a certificate for `names` (DNS names; IP literals become IP entries), valid for a day. */
  issue(names: string[]): Promise<TestCertificate>;
  /** Remove the directory holding every file of this CA. */
  cleanup(): Promise<void>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

const isIp = (name: string) => /^[0-9.]+$/.test(name) || name.includes(':');

/** Create a CA in a fresh temporary directory. `name` goes in its subject, to tell CAs apart in errors. */
export async function createTestCa(name = 'Ranvier Test CA'): Promise<TestCa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ranvier-ca-'));
  const caKey = path.join(dir, 'ca.key');
  const caCert = path.join(dir, 'ca.pem');
  // EC keys: generating them is instant, unlike RSA.
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], dir);
  await openssl(
    ['req', '-x509', '-new', '-key', caKey, '-sha256', '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', caCert],
    dir,
  );
  const cert = await readFile(caCert, 'utf8');
  let serial = 0;

  return {
    cert,
    certFile: caCert,
    async issue(names: string[]): Promise<TestCertificate> {
      if (names.length === 0) throw new Error('a certificate needs at least one name');
      const base = path.join(dir, `server${++serial}`);
      const keyFile = `${base}.key`;
      const csrFile = `${base}.csr`;
      const certFile = `${base}.pem`;
      const extFile = `${base}.ext`;
      const all = [...new Set([...names, '127.0.0.1', '::1'])];
      const san = all.map((n) => (isIp(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      await writeFile(
        extFile,
        `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
      );
      await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyFile], dir);
      await openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${names[0]}`, '-out', csrFile], dir);
      await openssl(
        ['x509', '-req', '-in', csrFile, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(1000 + serial),
          '-days', '1', '-sha256', '-extfile', extFile, '-out', certFile],
        dir,
      );
      return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8'), certFile, keyFile };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
