/**
 * Picks the media store the configuration asks for. The S3 store's signing
 * library is only loaded once that store makes its first request, so a
 * server on local storage never loads it.
 */
import path from 'node:path';
import { ConfigError, type Config } from '../config/config.js';
import { S3MediaStore } from './s3-store.js';
import { LocalMediaStore, type MediaStore } from './store.js';

type StoreConfig = Pick<
  Config,
  | 'data_dir'
  | 'media_store'
  | 'media_store_path'
  | 's3_endpoint'
  | 's3_region'
  | 's3_bucket'
  | 's3_prefix'
  | 's3_access_key_id'
  | 's3_secret_access_key'
  | 's3_force_path_style'
>;

export function createMediaStore(config: StoreConfig): MediaStore {
  if (config.media_store !== 's3') {
    return new LocalMediaStore(config.media_store_path || path.join(config.data_dir, 'media'));
  }
  // Checked here rather than per option: they are only required together with media_store = 's3'.
  for (const key of ['s3_bucket', 's3_access_key_id', 's3_secret_access_key'] as const) {
    if (!config[key]) throw new ConfigError(key, "must be set when media_store is 's3'");
  }
  return new S3MediaStore({
    endpoint: config.s3_endpoint || `https://s3.${config.s3_region}.amazonaws.com`,
    region: config.s3_region,
    bucket: config.s3_bucket,
    prefix: config.s3_prefix,
    accessKeyId: config.s3_access_key_id,
    secretAccessKey: config.s3_secret_access_key,
    forcePathStyle: config.s3_force_path_style,
    // On local disk, beside the database: uploads are spooled here before they are sent.
    tmpDir: path.join(config.data_dir, 'media-spool'),
  });
}
