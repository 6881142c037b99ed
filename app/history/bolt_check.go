package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
)

// ErrDamaged reports a history file that cannot be opened safely.
var ErrDamaged = errors.New("history file is damaged")

// bbolt's file header, as it lays it out (go.etcd.io/bbolt, internal/common):
// two meta pages at the start, each a 16-byte page header followed by the
// meta fields, in the machine's byte order.
const (
	boltPageHeaderSize = 16
	boltMetaSize       = 64 // through the checksum
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltNoFreelist     = ^uint64(0) // freelist pgid when the freelist is not stored
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // the high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// checkBoltFile refuses a history file that bbolt would fault on. bbolt
// maps the file and trusts its meta pages: a file cut short (a full disk, a
// partial copy) leaves pages that the meta says exist beyond its end, and
// reading them is a memory fault that no recover can catch. So the file's
// size is checked against what its newest valid meta page claims before
// bbolt opens it. A missing or empty file is fine: bbolt creates it.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open history file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open history file: %w", err)
	}
	size := info.Size()
	if size == 0 || !info.Mode().IsRegular() {
		return nil // bbolt creates an empty file, and says what else is wrong
	}
	damaged := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s. %s", ErrDamaged, path, fmt.Sprintf(format, args...), untouchedAdvice)
	}

	first, ok := readBoltMeta(f, 0)
	second, ok2 := readBoltMeta(f, boltSecondMetaOffset(f, size, first, ok))
	var meta boltMeta
	switch {
	case ok && ok2:
		meta = first
		if second.txid > first.txid {
			meta = second
		}
	case ok:
		meta = first
	case ok2:
		meta = second
	default:
		return damaged("is corrupt or not a Herald history file: neither of its two header pages is valid")
	}
	if need := int64(meta.pgid) * int64(meta.pageSize); size < need {
		return damaged("is %d bytes long, but its header says it holds %d: it was cut short", size, need)
	}
	if meta.root >= meta.pgid || (meta.freelist != boltNoFreelist && meta.freelist >= meta.pgid) {
		return damaged("has a header that points past its own end")
	}
	return nil
}

// Where bbolt looks for the second header page when the first one does not
// say the page size: at every power of two from 1 KiB to 16 MiB, as far as
// the file reaches (go.etcd.io/bbolt, db.go, getPageSizeFromSecondMeta).
const (
	boltMinSearchedPage = 1 << 10
	boltMaxSearchedPage = 16 << 20
)

// boltSecondMetaOffset is where bbolt reads the second header page: one
// page in, with the page size the first header gives or, when it is
// damaged, the first size at which bbolt finds a valid header.
func boltSecondMetaOffset(r io.ReaderAt, size int64, first boltMeta, firstValid bool) int64 {
	if firstValid {
		return int64(first.pageSize)
	}
	for offset := int64(boltMinSearchedPage); offset <= boltMaxSearchedPage && offset < size-boltMinSearchedPage; offset *= 2 {
		if m, ok := readBoltMeta(r, offset); ok {
			return int64(m.pageSize)
		}
	}
	return int64(os.Getpagesize())
}

// readBoltMeta reads the meta page at offset and reports whether it is
// valid: bbolt's magic, version and checksum, and a sane page size.
func readBoltMeta(r io.ReaderAt, offset int64) (boltMeta, bool) {
	buf := make([]byte, boltPageHeaderSize+boltMetaSize)
	if _, err := r.ReadAt(buf, offset); err != nil {
		return boltMeta{}, false
	}
	m := buf[boltPageHeaderSize:]
	order := binary.NativeEndian
	sum := fnv.New64a()
	sum.Write(m[:56])
	meta := boltMeta{
		pageSize: order.Uint32(m[8:]),
		root:     order.Uint64(m[16:]),
		freelist: order.Uint64(m[32:]),
		pgid:     order.Uint64(m[40:]),
		txid:     order.Uint64(m[48:]),
	}
	valid := order.Uint32(m[0:]) == boltMagic && order.Uint32(m[4:]) == boltVersion &&
		order.Uint64(m[56:]) == sum.Sum64() &&
		meta.pageSize >= 512 && meta.pageSize <= boltMaxSearchedPage && meta.pageSize&(meta.pageSize-1) == 0
	return meta, valid
}

// faultsAsErrors runs f, turning a panic, or a memory fault while reading
// the mapped file, into ErrDamaged: the checks above catch a file cut
// short, and this catches damage inside it that bbolt does not check for,
// at start-up and in every transaction after it.
func faultsAsErrors(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s could not be read (%v)", ErrDamaged, path, p)
		}
	}()
	return f()
}

// untouchedAdvice ends the line that refuses a damaged history file at
// start-up.
const untouchedAdvice = "Herald left it untouched: move it aside to start with an empty history, or restore it from a backup"
