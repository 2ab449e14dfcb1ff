import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { chooseSize, imageInfo, makeThumbnail } from '../../src/media/thumbnails.js';

test('the smallest preset at least as big as asked, same method first', () => {
  assert.deepEqual(chooseSize(10, 10, 'crop', false), { width: 32, height: 32, method: 'crop' });
  assert.deepEqual(chooseSize(32, 32, 'crop', false), { width: 32, height: 32, method: 'crop' });
  assert.deepEqual(chooseSize(33, 20, 'crop', false), { width: 96, height: 96, method: 'crop' });
  assert.deepEqual(chooseSize(50, 50, 'scale', false), { width: 320, height: 240, method: 'scale' });
  assert.deepEqual(chooseSize(200, 200, 'crop', false), { width: 320, height: 240, method: 'scale' });
  assert.deepEqual(chooseSize(700, 500, 'scale', false), { width: 800, height: 600, method: 'scale' });
  assert.equal(chooseSize(801, 10, 'scale', false), undefined);
  assert.deepEqual(chooseSize(123, 45, 'crop', true), { width: 123, height: 45, method: 'crop' });
  assert.equal(chooseSize(5000, 45, 'crop', true), undefined);
});

test('crop fills the box; scale keeps the aspect ratio; never upscales', async () => {
  const png = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#123456' } }).png().toBuffer();
  assert.deepEqual(await imageInfo(png), { width: 400, height: 200, animated: false });
  const crop = await makeThumbnail(png, 'image/png', { width: 96, height: 96, method: 'crop' }, false);
  assert.equal(crop.contentType, 'image/png');
  assert.deepEqual(await imageInfo(crop.data), { width: 96, height: 96, animated: false });
  const scale = await makeThumbnail(png, 'image/png', { width: 320, height: 240, method: 'scale' }, false);
  assert.deepEqual(await imageInfo(scale.data), { width: 320, height: 160, animated: false });
  const big = await makeThumbnail(png, 'image/png', { width: 800, height: 600, method: 'scale' }, false);
  assert.deepEqual(await imageInfo(big.data), { width: 400, height: 200, animated: false });
  const jpeg = await sharp(png).jpeg().toBuffer();
  assert.equal((await makeThumbnail(jpeg, 'image/jpeg', { width: 32, height: 32, method: 'crop' }, false)).contentType, 'image/jpeg');
});
