// Command dispatcher consumes FTP transfer tasks from Kafka and leases them
// to agents. See the README for flags and configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ftp-pooler/ftp-pooler/services/dispatcher"
	"github.com/ftp-pooler/ftp-pooler/services/internal/buildinfo"
	"github.com/ftp-pooler/ftp-pooler/services/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts, err := dispatcher.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
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
	cfg, conns, err := dispatcher.Load(opts, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		os.Exit(1)
	}
	if opts.CheckConfig {
		fmt.Printf("%s and %s are valid (%d endpoints)\n", opts.ConfigPath, opts.ConnectionsPath, len(conns.Endpoints))
		return
	}
	logger, err := logging.New(cfg.Logging, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		os.Exit(1)
	}
	if err := dispatcher.Run(ctx, cfg, conns, logger, nil); err != nil {
		logger.Error("dispatcher failed", "error", err)
		os.Exit(1)
	}
}
