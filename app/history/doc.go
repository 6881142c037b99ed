// Package history is Herald's history file: the store that keeps every
// acknowledged message on disk, so that it survives a restart, a kill -9
// or a power cut.
//
// It is two files. FILE is a bbolt database with a bucket per topic (keys
// are big-endian message ids) that holds everything up to the last
// checkpoint. FILE-journal is a fixed-size, pre-written file in front of
// it: a publish is one record written to the journal and one fdatasync,
// and records are carried into bbolt later, many in one transaction (see
// File). Records carry a checksum and consecutive numbers, so start-up can
// tell a write torn by a crash (only ever the last record) from damage (a
// bad record with valid ones after it, or a journal missing or replaced
// while the last checkpoint expected records).
//
// A file that is damaged in any way is refused before anything is written
// to it, with one line that says what was found and how to recover, and
// both files are left exactly as they were: bbolt's pages are all read and
// checked first, and a fault inside bbolt (which maps the file) is turned
// into an error. Inspect and SetAside are what herald reset-history uses.
package history
