package main

import "runtime/debug"

// version is the release this binary was built as, when the build says
// so: go build -buildvcs=true -ldflags "-X main.version=v1.2.3". Empty
// otherwise.
var version = ""

// versionLine says which Herald this is.
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	return describeBuild(version, info, ok)
}

// describeBuild words what a build recorded: the release or module
// version, the commit and the Go release. go run, go test and
// -buildvcs=false record no commit, and then the line says how to get one.
func describeBuild(release string, info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "herald (no build information: build with go build)"
	}
	if release == "" {
		release = info.Main.Version
	}
	if release == "" || release == "(devel)" {
		release = "development build"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	line := "herald " + release
	if rev := settings["vcs.revision"]; rev != "" {
		line += ", commit " + rev
		if settings["vcs.modified"] == "true" {
			line += " with uncommitted changes"
		}
		if at := settings["vcs.time"]; at != "" {
			line += " of " + at
		}
	} else {
		line += ", no commit recorded (go run and -buildvcs=false record none: build with go build -buildvcs=true in a git checkout)"
	}
	return line + ", " + info.GoVersion
}

// builtInDefaults is the source of the configuration when there is no file.
const builtInDefaults = "built-in defaults"
