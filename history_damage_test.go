package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startHeraldChild runs Herald as its own process on the config file at
// configPath, so that a test can kill it with SIGKILL.
func startHeraldChild(t *testing.T, configPath string) (*heraldProcess, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-config", configPath)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = newTestLog(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("herald did not start: %v", err)
	}
	h := &heraldProcess{URL: strings.TrimSpace(strings.TrimPrefix(line, "Herald is listening on "))}
	h.Origin = strings.TrimSuffix(h.URL, "/")
	return h, cmd
}

// kill9 stops Herald at once: no shutdown, no checkpoint.
func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// runHeraldCommand runs Herald as its own process with args and returns
// what it printed and its exit status. If it starts serving, it is
// stopped at once, and stdout is the line that says it is listening.
func runHeraldCommand(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asMainEnv+"=1")
	var errOut strings.Builder // read once Wait has returned
	cmd.Stderr = &errOut
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	lines := bufio.NewScanner(pipe)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "Herald is listening") {
			cmd.Process.Kill()
			break
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// writeHistoryConfig writes a config that keeps history in file, and
// returns its path.
func writeHistoryConfig(t *testing.T, file string) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(file), "config.yaml")
	config := fmt.Sprintf("host: 127.0.0.1\nport: 0\n%shistory:\n  file: %s\n", unlimitedPublishing, file)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// numbered is the text of the i-th message the tests here publish: each
// is found once in the journal, where a test can damage it.
func numbered(i int) string { return fmt.Sprintf("message %03d", i) }

// publishAndKill9 starts Herald on file, publishes n numbered messages,
// each acknowledged before the next, and kills Herald with SIGKILL. No
// checkpoint ran since start-up, so the journal alone holds them.
func publishAndKill9(t *testing.T, file string, n int) []receiptReply {
	t.Helper()
	h, cmd := startHeraldChild(t, writeHistoryConfig(t, file))
	var sent []receiptReply
	for i := range n {
		sent = append(sent, h.publish(t, numbered(i)))
	}
	kill9(t, cmd)
	return sent
}

// copyHistory copies the history file at from and its journal, if there
// is one, to a new directory, and returns the copy's path.
func copyHistory(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), filepath.Base(from))
	for _, suffix := range []string{"", "-journal"} {
		data, err := os.ReadFile(from + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// historyBytes is what the history file at path and its journal hold; a
// missing journal is nil.
func historyBytes(t *testing.T, path string) [2][]byte {
	t.Helper()
	var both [2][]byte
	for i, suffix := range []string{"", "-journal"} {
		data, err := os.ReadFile(path + suffix)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		both[i] = data
	}
	return both
}

// flipByteOf inverts a byte of the one place text is in the file at path.
func flipByteOf(t *testing.T, path, text string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(data, []byte(text)) != 1 {
		t.Fatalf("%q is in %s %d times, want once", text, path, bytes.Count(data, []byte(text)))
	}
	data[bytes.Index(data, []byte(text))+len(text)-1] ^= 0x01
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertRefused runs Herald on the history file at path and checks that
// it stops with one line that names the journal, says it is damaged and
// what to do, and that neither file changed.
func assertRefused(t *testing.T, path string) {
	t.Helper()
	before := historyBytes(t, path)
	stdout, stderr, status := runHeraldCommand(t, "-config", writeHistoryConfig(t, path))
	if strings.HasPrefix(stdout, "Herald is listening") {
		t.Fatalf("herald started on the damaged files:\n%s", stderr)
	}
	if status != 1 {
		t.Fatalf("herald exited with %d, want 1\nstderr: %s", status, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 {
		t.Fatalf("stderr is %d lines, want one:\n%s", len(lines), stderr)
	}
	for _, want := range []string{"damaged", "journal " + path + "-journal", "left both files untouched", "herald reset-history"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("%q does not say %q", lines[0], want)
		}
	}
	if stdout != "" {
		t.Errorf("printed %q although it did not start", stdout)
	}
	if after := historyBytes(t, path); !bytes.Equal(after[0], before[0]) || !bytes.Equal(after[1], before[1]) {
		t.Errorf("the refused files were written to: the history file unchanged: %t, the journal: %t",
			bytes.Equal(after[0], before[0]), bytes.Equal(after[1], before[1]))
	}
}

// Each damage of a journal that holds acknowledged messages, after a
// kill -9, is refused: none of them may be dropped in silence, nor the
// evidence overwritten.
func TestDamagedJournalAfterKill9IsRefusedAndLeftAsItWas(t *testing.T) {
	t.Parallel()
	killed := filepath.Join(t.TempDir(), "history.db")
	publishAndKill9(t, killed, 300)
	tests := []struct {
		name   string
		damage func(t *testing.T, journal string)
	}{
		{"givenTheJournalCutTo4096Bytes", func(t *testing.T, journal string) {
			if err := os.Truncate(journal, 4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"givenAByteFlippedInRecord5", func(t *testing.T, journal string) { flipByteOf(t, journal, numbered(4)) }},
		{"givenAByteFlippedInRecord150", func(t *testing.T, journal string) { flipByteOf(t, journal, numbered(149)) }},
		{"givenTheJournalZeroed", func(t *testing.T, journal string) {
			info, err := os.Stat(journal)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(journal, make([]byte, info.Size()), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"givenTheJournalDeleted", func(t *testing.T, journal string) {
			if err := os.Remove(journal); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := copyHistory(t, killed)
			tc.damage(t, path+"-journal")
			assertRefused(t, path)
		})
	}
}

// A crash in the middle of a journal write leaves that record torn, and
// only it: start-up drops it, as the publish was never acknowledged, and
// brings back every acknowledged message.
func TestTornJournalTailAfterKill9BringsBackEveryAcknowledgedMessage(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "history.db")
	h, cmd := startHeraldChild(t, writeHistoryConfig(t, file))
	var sent []receiptReply
	for i := range 20 {
		sent = append(sent, h.publish(t, fmt.Sprint("m", i)))
	}
	journal := file + "-journal"
	acknowledged, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	// The next publish's record, as it lands on disk.
	h.publish(t, "m20"+strings.Repeat(" and more", 500))
	withNext, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	kill9(t, cmd)
	from := 0
	for from < len(acknowledged) && acknowledged[from] == withNext[from] {
		from++
	}
	to := len(withNext)
	for to > from && acknowledged[to-1] == withNext[to-1] {
		to--
	}
	if to-from < 4000 {
		t.Fatalf("the last record changed %d bytes of the journal, want the whole record", to-from)
	}
	// What a crash half way through that write leaves: the record's first
	// half, and what the journal held after it before.
	torn := append(acknowledged[:from:from], withNext[from:from+(to-from)/2]...)
	torn = append(torn, acknowledged[len(torn):]...)
	if err := os.WriteFile(journal, torn, 0o600); err != nil {
		t.Fatal(err)
	}

	restarted := startHerald(t, fmt.Sprintf("%shistory:\n  file: %s\n", unlimitedPublishing, file))
	if logs := restarted.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "was not whole, so it was dropped") {
		t.Errorf("start-up dropped the torn record without a warning:\n%s", logs)
	}
	conn := assertReplay(t, restarted, sent)
	next := restarted.publish(t, "after the restart")
	if f := readJSONFrame(t, conn); f.ID != next.ID || f.Msg != "after the restart" {
		t.Fatalf("after the replay came %+v, want the new message %s: the torn record must not come back", f, next.ID)
	}
	if next.id(t) != sent[19].id(t)+1 {
		t.Errorf("the first id after the restart is %s, want %d: the torn publish was never acknowledged", next.ID, sent[19].id(t)+1)
	}
}

// The way past a damaged journal, step by step as the README gives it:
// start-up refuses; herald reset-history says what is lost and changes
// nothing; with -confirm it sets both files aside as they were; then
// Herald starts with an empty history, tells a client that resumes from
// an old id that an unknown number of messages was lost, and gives out
// ids above every old one.
func TestResetHistoryAfterADamagedJournalAsTheREADMEGivesIt(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "history.db")
	sent := publishAndKill9(t, file, 300)
	flipByteOf(t, file+"-journal", numbered(149))
	config := writeHistoryConfig(t, file)
	assertRefused(t, file)
	damaged := historyBytes(t, file)

	stdout, stderr, status := runHeraldCommand(t, "-config", config, "reset-history")
	if status != 0 {
		t.Fatalf("reset-history exited with %d:\n%s", status, stderr)
	}
	for _, want := range []string{"damaged record", "299 records that can still be read", "default: 299", "Nothing was changed", "reset-history -confirm"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("reset-history did not say %q:\n%s", want, stdout)
		}
	}
	if now := historyBytes(t, file); !bytes.Equal(now[0], damaged[0]) || !bytes.Equal(now[1], damaged[1]) {
		t.Fatal("reset-history without -confirm changed the files")
	}

	stdout, stderr, status = runHeraldCommand(t, "-config", config, "reset-history", "-confirm")
	if status != 0 {
		t.Fatalf("reset-history -confirm exited with %d:\n%s", status, stderr)
	}
	aside, err := filepath.Glob(file + "*.damaged-*")
	if err != nil || len(aside) != 2 {
		t.Fatalf("set aside %v (%v), want the file and its journal\n%s", aside, err, stdout)
	}
	for _, name := range aside {
		was := damaged[0]
		if strings.Contains(name, "-journal") {
			was = damaged[1]
		}
		if data, err := os.ReadFile(name); err != nil || !bytes.Equal(data, was) {
			t.Errorf("%s is not the damaged file as it was (%v)", name, err)
		}
		if !strings.Contains(stdout, name) {
			t.Errorf("reset-history -confirm did not say where it put %s:\n%s", name, stdout)
		}
	}

	h := startHerald(t, fmt.Sprintf("%shistory:\n  file: %s\n", unlimitedPublishing, file))
	conn := dial(t, h.ws("/ws?format=json&since="+sent[10].ID))
	if f := readJSONFrame(t, conn); f.Type != "lost" || f.Count != nil || f.Since != sent[10].ID {
		t.Errorf("resuming from an old id began with %+v, want a lost notice with no count", f)
	}
	if next := h.publish(t, "after the reset"); next.id(t) <= sent[len(sent)-1].id(t) {
		t.Errorf("the first id after the reset is %s, not above the last acknowledged %s", next.ID, sent[len(sent)-1].ID)
	}
}
