# fourtuple's image: Node 20 slim, the production dependencies, the built dist/.
# Build: npm ci && npm run build && docker build -t fourtuple:latest .
FROM node:20-slim
WORKDIR /opt/fourtuple
COPY package.json package-lock.json ./
# koffi ships its binaries in the package: no install script is needed (none is run).
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY dist/ ./dist/
COPY deploy/ ./deploy/
# The probe's holders are /bin/sh children; nothing is written at run time (read-only root is fine).
ENTRYPOINT ["node", "/opt/fourtuple/dist/cli/main.js"]
CMD ["--help"]
