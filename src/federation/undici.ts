/**
 * undici, with its HTTP parser, costs about 19 MB of resident memory once
 * loaded: it is loaded on the first outbound federation request, not at
 * start-up, so a server nobody federates with stays small.
 */
let undiciModule: Promise<typeof import('undici')> | undefined;

export const loadUndici = () => (undiciModule ??= import('undici'));
