// Package buildinfo reports the version the binaries were built from.
package buildinfo

import "runtime/debug"

// version is set by the Makefile with -ldflags "-X ...buildinfo.version=...".
var version string

// Version returns the build version: the linker-set one, else the module's.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
