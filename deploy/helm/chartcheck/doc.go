// Package chartcheck checks the ftp-pooler Helm chart against the Kubernetes
// API types and against the binaries it deploys. It has no code of its own
// to ship: the tests render the chart with the helm binary (HELM), decode
// every manifest strictly, and run bin/dispatcher and bin/agent (FTP_POOLER_BIN)
// on the rendered configuration. scripts/helm-lint.sh runs them.
package chartcheck
