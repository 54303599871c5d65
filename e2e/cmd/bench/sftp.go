package main

// The sftp section: FTP Pooler against OpenSSH's sshd (scripts/e2e/sftpd.sh)
// beside OpenSSH's own sftp client for one 1 GiB file, and beside ftpfetch
// -sftp (plain pkg/sftp over the same sessions) for small files.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// sftpCipher is what FTP Pooler's SSH client (golang.org/x/crypto/ssh)
// negotiates first; OpenSSH's client would pick chacha20-poly1305, which
// costs more CPU here, so the sftp client is pinned to the same cipher to
// compare the programs, not the ciphers.
const sftpCipher = "aes128-gcm@openssh.com"

// sftpSmall is the small-file workload of the section.
var sftpSmall = workload{name: "w20B", count: 10_000, size: 20}

// sftp runs the SFTP sections: "sftp", baselines and FTP Pooler
// (transactional, the default) paired run by run, and "sftp-memory", the
// agent's memory with 16 concurrent 1 GiB downloads.
func (b *bench) sftp(ctx context.Context) error {
	if b.env.SFTP.Addr == "" {
		b.logf("sftp: skipped, OpenSSH's sshd does not run (scripts/e2e/sftpd.sh start)")
		return nil
	}
	small := sftpSmall
	small.count = max(1, small.count/b.opts.divide)
	big := workload{name: "w1G", count: 1, size: 1 << 30}
	for _, w := range []workload{small, big} {
		if err := b.ensureFiles(w); err != nil {
			return err
		}
		if err := b.linkToSFTP(w); err != nil {
			return err
		}
	}
	if !b.opts.keepFiles {
		defer func() {
			for _, w := range []workload{small, big} {
				_ = os.RemoveAll(b.env.SFTP.Path("/bench/" + w.name))
			}
		}()
	}
	if b.section("sftp") {
		b.res.sftpSmall = small
		s, err := b.startStack(stackOpts{name: "sftp", delivery: "exactly_once", agents: b.opts.agents, conns: b.opts.conns, remote: "openssh"})
		if err != nil {
			return err
		}
		err = b.sftpReps(ctx, s, small, big)
		s.stop()
		if err != nil {
			return err
		}
	}
	if ctx.Err() != nil || !b.section("sftp-memory") {
		return ctx.Err()
	}
	// 16 transfers on 2 SSH connections of 8 sessions each.
	s, err := b.startStack(stackOpts{name: "sftp-mem", delivery: "exactly_once", agents: 1, conns: b.opts.conns, slots: 16,
		remote: "openssh", sftpConns: 2, sftpSessions: 8})
	if err != nil {
		return err
	}
	smp, err := b.runOurs(s, big, download, max(2, 16/b.opts.divide))
	s.stop()
	if err != nil {
		return fmt.Errorf("sftp 16 × 1 GiB: %w", err)
	}
	b.res.sftpMem16 = smp
	b.logf("sftp: 16 concurrent 1 GiB downloads: agent peak RSS %.0f MiB, %.0f MB/s", smp.rssA, smp.mbps)
	return nil
}

func (b *bench) sftpReps(ctx context.Context, s *pooler, small, big workload) error {
	if _, err := b.runOurs(s, small, download, min(small.count, 200)); err != nil {
		return fmt.Errorf("sftp warm-up: %w", err)
	}
	for rep := 1; rep <= b.opts.reps; rep++ {
		for _, d := range []direction{download, upload} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			base, err := b.runPooledSFTP(small, d, s.opts.sftpConns, s.opts.sftpSessions)
			if err != nil {
				return err
			}
			b.res.add("sftp-pooled", small, d, base)
			ours, err := b.runOurs(s, small, d, small.count)
			if err != nil {
				return fmt.Errorf("sftp %s %s: %w", small.title(), d, err)
			}
			ours.ratio = ours.rate / base.rate
			b.res.add("sftp-txn", small, d, ours)
			b.logf("run %d sftp %s %s: %.0f tasks/s (%.0f%% of pkg/sftp pooled %.0f just before), p50 %.0f ms, agent CPU %.2f s per 1,000",
				rep, small.title(), d, ours.rate, ours.ratio*100, base.rate, ours.p50, ours.cpuA)

			client, err := b.runSFTPClient(big, d)
			if err != nil {
				return err
			}
			b.res.add("sftp-client", big, d, client)
			ours, err = b.runOurs(s, big, d, 1)
			if err != nil {
				return fmt.Errorf("sftp 1 GiB %s: %w", d, err)
			}
			ours.ratio = ours.mbps / client.mbps
			b.res.add("sftp-txn", big, d, ours)
			b.logf("run %d sftp 1 GiB %s: %.0f MB/s (%.0f%% of OpenSSH's sftp %.0f MB/s just before), agent RSS %.0f MiB",
				rep, d, ours.mbps, ours.ratio*100, client.mbps, ours.rssA)
		}
	}
	return nil
}

// linkToSFTP puts w's files in the SFTP chroot at the same paths as on
// vsftpd (hard links where the homes share a file system).
func (b *bench) linkToSFTP(w workload) error {
	dir := b.env.SFTP.Path("/bench/" + w.name)
	last := filepath.Join(dir, fileName(w.count-1))
	if st, err := os.Stat(last); err == nil && st.Size() == w.size {
		return nil
	}
	// Root-owned and readable, like the chroot above it.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := 0; i < w.count; i++ {
		p := filepath.Join(dir, fileName(i))
		_ = os.Remove(p)
		if err := linkOrCopy(b.env.VSFTPD.Path(remoteSrc(w, i)), p); err != nil {
			return err
		}
	}
	return nil
}

// runPooledSFTP moves w with ftpfetch -sftp over conns SSH connections of
// sessions pkg/sftp sessions each.
func (b *bench) runPooledSFTP(w workload, d direction, conns, sessions int) (sample, error) {
	srv := b.env.SFTP
	return b.runFetch(w, d, srv.Name, "-sftp", "-addr", srv.Addr, "-user", srv.User, "-pass", srv.Pass, "-known-hosts", srv.KnownHosts,
		"-conns", fmt.Sprint(conns), "-sessions", fmt.Sprint(sessions))
}

// runSFTPClient moves w's first file with OpenSSH's sftp client (as the
// key user: it has no way to read a password in batch mode).
func (b *bench) runSFTPClient(w workload, d direction) (sample, error) {
	local, remote, err := b.runDirs("sftpclient")
	if err != nil {
		return sample{}, err
	}
	defer b.cleanRun(local, remote, w.size)
	srv := b.env.SFTP
	host, port, _ := strings.Cut(srv.Addr, ":")
	cmdLine := fmt.Sprintf("get %s %s\n", remoteSrc(w, 0), filepath.Join(b.localBase, local, fileName(0)))
	if d == upload {
		cmdLine = fmt.Sprintf("put %s %s\n", filepath.Join(b.localBase, localSrc(w, 0)), remotePath(srv.Name, remote+"/"+fileName(0)))
	}
	settle(1, w.size)
	cmd := exec.Command("sftp", "-q", "-b", "-", "-c", sftpCipher, "-i", srv.KeyFile, "-P", port,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+srv.KnownHosts,
		srv.KeyUser+"@"+host)
	cmd.Stdin = strings.NewReader(cmdLine)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Seconds()
	if err != nil {
		return sample{}, fmt.Errorf("sftp %s: %v: %.500s", d, err, out)
	}
	got := filepath.Join(b.localBase, local, fileName(0))
	if d == upload {
		got = srv.Path(remotePath(srv.Name, remote+"/"+fileName(0)))
	}
	if st, err := os.Stat(got); err != nil || st.Size() != w.size {
		return sample{}, fmt.Errorf("sftp %s: %s is not %d bytes after the run (%v): %.500s", d, got, w.size, err, out)
	}
	return sample{rate: 1 / took, mbps: float64(w.size) / took / 1e6}, nil
}

// sftpMarkdown is the section's table.
func (r *results) sftpMarkdown(b *bench) string {
	big := workload{name: "w1G", count: 1, size: 1 << 30}
	if len(r.get("sftp-txn", big, download)) == 0 && len(r.get("sftp-txn", r.sftpSmall, download)) == 0 {
		return ""
	}
	var m strings.Builder
	m.WriteString("### SFTP: OpenSSH's sshd\n\n")
	fmt.Fprintf(&m, "FTP Pooler transactional (the default) with one `type = sftp` endpoint of 2 SSH connections × 2 sessions, paired run by run with "+
		"OpenSSH's `sftp` client (one 1 GiB file, `-c %s`, the cipher FTP Pooler's Go client negotiates) and with `ftpfetch -sftp`, "+
		"plain pkg/sftp over the same 2 × 2 sessions (small files). Every program moves the same files over loopback to the same chrooted `internal-sftp`.\n\n", sftpCipher)
	m.WriteString("| workload | direction | baseline | FTP Pooler | ours ÷ baseline run just before | target |\n|---|---|---:|---:|---:|---|\n")
	for _, d := range []direction{download, upload} {
		if o := r.get("sftp-txn", big, d); len(o) > 0 {
			fmt.Fprintf(&m, "| 1 GiB, MB/s | %s | OpenSSH sftp %s | %s | %s | ≥ 90%%: %s |\n", d,
				r.get("sftp-client", big, d).spread(mbps, ""), o.spread(mbps, ""), paired(o), verdict(o.med(ratioPct) >= 90))
		}
	}
	for _, d := range []direction{download, upload} {
		if o := r.get("sftp-txn", r.sftpSmall, d); len(o) > 0 {
			fmt.Fprintf(&m, "| %s, files/s | %s | pkg/sftp pooled %s | %s | %s | ≥ 70%%: %s |\n", r.sftpSmall.title(), d,
				r.get("sftp-pooled", r.sftpSmall, d).spread(rate, ""), o.spread(rate, ""), paired(o), verdict(o.med(ratioPct) >= 70))
		}
	}
	if s := r.sftpMem16; s.rssA > 0 {
		fmt.Fprintf(&m, "| 16 concurrent 1 GiB downloads, 2 SSH connections × 8 sessions (%.0f MB/s) | download | – | agent peak RSS %.0f MiB | – | ≤ 100 MiB: %s |\n",
			s.mbps, s.rssA, verdict(s.rssA <= 100))
	}
	m.WriteString("\n")
	return m.String()
}

// sftpVersions names the SFTP programs for the report's versions line.
func sftpVersions(e *benchEnv) string {
	if e.SFTP.Addr == "" {
		return ""
	}
	out, _ := exec.Command("ssh", "-V").CombinedOutput()
	return "; " + strings.TrimSpace(string(out)) + " (sshd and sftp); pkg/sftp " + moduleVersion(e, "github.com/pkg/sftp")
}

// moduleVersion is the version of module path the e2e module requires.
func moduleVersion(e *benchEnv, path string) string {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path)
	cmd.Dir = filepath.Join(e.RepoRoot, "e2e")
	out, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
