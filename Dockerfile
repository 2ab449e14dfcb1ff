# syntax=docker/dockerfile:1
#
# Ranvier homeserver image. Build: `docker build -t ranvier .`; run: see
# docker-compose.yml and the README ("### Docker"). The install and build
# commands are the README's quick start (`npm ci`, which also builds dist/
# through the `prepare` script); test/deploy/docker.test.ts fails when they
# drift apart.

# ---- build: compilers for better-sqlite3's native module when no prebuilt binary fits
FROM node:20-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# `prepare` compiles src/ during `npm ci`, so the sources must be there first.
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci
# Keep only production dependencies for the runtime image (no TypeScript, tsx, test tools).
RUN npm prune --omit=dev

# ---- runtime
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    RANVIER_ADDRESS=0.0.0.0 \
    RANVIER_PORT=8008 \
    RANVIER_DATA_DIR=/data
WORKDIR /app
# package.json is read at run time (version in /_matrix/federation/v1/version and --version).
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The image's `node` user (uid 1000) owns the data volume; nothing runs as root.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# 8008: client and federation APIs over plain HTTP (put a TLS reverse proxy in front);
# 8448: only used when federation_tls_port/cert/key are set.
EXPOSE 8008 8448
# No curl in the slim image: ask node itself. Follows RANVIER_PORT if it is changed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.RANVIER_PORT||8008)+'/_matrix/client/versions',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Same flags as `npm start`: small V8 young generation and thread pool keep idle memory low.
CMD ["node", "--max-semi-space-size=1", "--v8-pool-size=1", "dist/main.js", "serve"]
