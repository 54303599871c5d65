// Command agent performs FTP transfers leased by dispatchers. See the README
// for flags and configuration.
package main

import (
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
	// Caught from the start, so a signal while the configuration loads
	// counts: the first stops the agent gracefully, the second at once.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

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
	stop := agent.NewStopper(cfg.Agent)
	go stopOnSignals(signals, stop)
	if err := agent.Run(stop, cfg, conns, logger); err != nil {
		logger.Error("agent failed", "error", err)
		os.Exit(1)
	}
}

// stopOnSignals maps the first signal to a graceful stop and the second to
// a stop now; a third one gets Go's default handling and ends the process.
func stopOnSignals(signals chan os.Signal, stop *agent.Stopper) {
	<-signals
	stop.Graceful()
	<-signals
	signal.Stop(signals)
	stop.Now()
}
