// Command agent performs FTP transfers leased by dispatchers. See the README
// for flags and configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ftp-pooler/ftp-pooler/services/agent"
	"github.com/ftp-pooler/ftp-pooler/services/internal/buildinfo"
	"github.com/ftp-pooler/ftp-pooler/services/internal/logging"
)

func main() {
	// The first signal starts a drain; a second one cuts it short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	force, forceNow := context.WithCancel(context.Background())
	defer forceNow()
	go func() {
		<-ctx.Done()
		stop()
		second, stopSecond := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stopSecond()
		<-second.Done()
		forceNow()
	}()

	opts, err := agent.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2)
	}
	if opts.ShowVersion {
		fmt.Println(buildinfo.Version())
		return
	}
	cfg, conns, err := agent.Load(opts, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	if opts.CheckConfig {
		fmt.Printf("%s and %s are valid (%d endpoints)\n", opts.ConfigPath, opts.ConnectionsPath, len(conns.Endpoints))
		return
	}
	logger, err := logging.New(cfg.Logging, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
	if err := agent.Run(ctx, force, cfg, conns, logger); err != nil {
		logger.Error("agent failed", "error", err)
		os.Exit(1)
	}
}
