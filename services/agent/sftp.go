package agent

import (
	"log/slog"
	"time"

	"github.com/ftp-pooler/ftp-pooler/services/agent/internal/sftpremote"
	"github.com/ftp-pooler/ftp-pooler/services/internal/config"
)

// newSFTPMux builds an SFTP endpoint's session source, checking its key
// and host keys now rather than at the first transfer. (An endpoint that
// turns the host key check off is logged at WARN with the connections
// file's other warnings.)
func newSFTPMux(ep *config.Endpoint, cfg config.Config, logger *slog.Logger) (*sftpremote.Mux, error) {
	opts := sftpremote.Options{
		Endpoint:       ep.ID,
		Addr:           ep.Address(),
		User:           ep.User,
		Password:       ep.Password.Reveal(),
		Timeout:        cfg.Transfer.IdleTimeout.D(),
		ConnectTimeout: time.Duration(cfg.Transfer.ConnectTimeoutSeconds) * time.Second,
		MaxSessions:    ep.SFTP.MaxSessionsPerConnection,
		Logger:         logger,
		HostKeys: sftpremote.HostKeys{
			KnownHostsFile: ep.SFTP.KnownHostsFile,
			Fingerprints:   ep.SFTP.HostKeyFingerprints,
			Insecure:       ep.SFTP.InsecureIgnoreHostKey,
		},
	}
	if ep.Timeout > 0 {
		opts.ConnectTimeout = ep.Timeout
	}
	if ep.SFTP.PrivateKey != "" {
		signer, err := sftpremote.Signer([]byte(ep.SFTP.PrivateKey.Reveal()), []byte(ep.SFTP.KeyPassphrase.Reveal()))
		if err != nil {
			return nil, err
		}
		opts.Signer = signer
	}
	d, err := sftpremote.NewDialer(opts)
	if err != nil {
		return nil, err
	}
	return sftpremote.NewMux(d), nil
}
