package main

import (
	"fmt"
	"os"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sftpMover is one pkg/sftp session. Its options are the library's
// defaults plus concurrent writes, the obvious choice of a program that
// uploads: pkg/sftp reads ahead by default but writes one request at a
// time unless told otherwise.
type sftpMover struct{ c *sftp.Client }

func dialSFTP(o options) ([]mover, func(), error) {
	hostKeys, err := knownhosts.New(o.knownHosts)
	if err != nil {
		return nil, nil, fmt.Errorf("known hosts: %w", err)
	}
	cfg := &ssh.ClientConfig{User: o.user, Auth: []ssh.AuthMethod{ssh.Password(o.pass)}, HostKeyCallback: hostKeys, Timeout: 10 * time.Second}
	var closers []func() error
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	var ms []mover
	for range o.conns {
		conn, err := ssh.Dial("tcp", o.addr, cfg)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("connect: %w", err)
		}
		closers = append(closers, conn.Close)
		for range o.sessions {
			c, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("sftp session: %w", err)
			}
			closers = append(closers, c.Close)
			ms = append(ms, &sftpMover{c: c})
		}
	}
	return ms, closeAll, nil
}

func (m *sftpMover) move(p pair, put bool) (int64, error) {
	if put {
		lf, err := os.Open(p.local)
		if err != nil {
			return 0, err
		}
		defer lf.Close()
		rf, err := m.c.OpenFile(p.remote, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return 0, err
		}
		n, err := rf.ReadFrom(lf)
		if cerr := rf.Close(); err == nil {
			err = cerr
		}
		return n, err
	}
	rf, err := m.c.Open(p.remote)
	if err != nil {
		return 0, err
	}
	defer rf.Close()
	lf, err := os.Create(p.local)
	if err != nil {
		return 0, err
	}
	n, err := rf.WriteTo(lf)
	if cerr := lf.Close(); err == nil {
		err = cerr
	}
	return n, err
}
