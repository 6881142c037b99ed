package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"herald/app/history"
)

// resetHistory is "herald reset-history": the deliberate way past a
// history file that start-up refuses as damaged. It says what is lost and,
// with -confirm, sets the file and its journal aside, so that Herald
// starts with an empty history.
//
// Why not start from the last checkpoint instead: the lost messages had
// ids after those the file keeps, clients may have seen them, and a topic's
// window of history cannot be followed by a jump in ids. Starting afresh,
// new ids stay above every old one and a client that resumes from an old
// id is told that an unknown number of messages was lost.
func resetHistory(args []string, configPath string, configGiven bool, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("herald reset-history", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&configPath, "config", configPath, "read history.file from `FILE`")
	confirm := flags.Bool("confirm", false, "set both files aside; without it, only say what would be lost")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald reset-history [-confirm] [-config FILE]\n\n"+
			"Says what a damaged history file (history.file and its journal) has lost. With -confirm,\n"+
			"renames both to NAME.damaged-TIME, so that Herald starts with an empty history.\nStop Herald first.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := parseCommandFlags(flags, args, &configGiven); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("reset-history: unexpected argument %q", flags.Arg(0))
	}
	cfg, source, err := loadConfig(configPath, configGiven, getenv)
	if err != nil {
		return err
	}
	path := cfg.History.File
	if path == "" {
		return fmt.Errorf("reset-history: %s sets no history.file: history is kept in memory", source.Name)
	}
	report, err := history.Inspect(path)
	if err != nil {
		return fmt.Errorf("reset-history: %w", err)
	}
	if report.Damage == nil {
		if *confirm {
			return fmt.Errorf("reset-history: %s and its journal are sound, so nothing was set aside; move them yourself to start with an empty history", path)
		}
		fmt.Fprintf(stdout, "%s and its journal are sound: Herald starts from them as they are. Nothing to do.\n", path)
		return nil
	}
	describeLoss(stdout, path, report)
	if !*confirm {
		fmt.Fprintf(stdout, "Nothing was changed. To set both files aside and start with an empty history, run:\n  herald -config %s reset-history -confirm\n", configPath)
		return nil
	}
	moved, err := history.SetAside(path, ".damaged-"+time.Now().UTC().Format("20060102T150405Z"))
	for _, name := range moved {
		fmt.Fprintf(stdout, "Set aside: %s\n", name)
	}
	if err != nil {
		return fmt.Errorf("reset-history: %w", err)
	}
	fmt.Fprintln(stdout, "Start Herald: it starts with an empty history.")
	return nil
}

// describeLoss says what starting afresh loses.
func describeLoss(w io.Writer, path string, report history.Report) {
	d := report.JournalDamage
	if d == nil {
		fmt.Fprintf(w, "Herald refuses %s: %v\n\nStarting afresh loses everything the file and its journal hold.\n", path, report.Damage)
	} else {
		fmt.Fprintf(w, "Herald refuses %s: %v\n\nStarting afresh loses:\n", path, d)
		if report.Messages > 0 {
			fmt.Fprintf(w, "- the %d messages of %d topics that %s keeps for clients that resume;\n", report.Messages, report.Topics, path)
		}
		if d.Counted {
			topics := slices.Sorted(maps.Keys(d.ReadableMessages))
			for i, topic := range topics {
				topics[i] = fmt.Sprintf("%s: %d", topic, d.ReadableMessages[topic])
			}
			fmt.Fprintf(w, "- what was published since its last checkpoint: %d records that can still be read, with messages of\n"+
				"  %s, and the damaged record, whose contents are unknown.\n", d.ReadableRecords, strings.Join(topics, ", "))
		} else {
			fmt.Fprintf(w, "- what was published since its last checkpoint, which cannot be counted.\n")
		}
	}
	fmt.Fprintf(w, "Clients that resume from an old id are told that an unknown number of messages was lost,\nand new ids stay above the old ones.\n")
}
