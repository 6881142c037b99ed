package access

import (
	"os"
	"sync"
)

// SecretFiles reads the files that secrets are kept in (file:PATH, and
// jwt.public_key_file), each once, and gives every later reader what the
// first read found. Herald checks its secrets when it loads the
// configuration and uses them when it builds its parts: reading each file
// once means that a file replaced in between cannot leave a part holding a
// secret other than the one checked, or two parts holding different ones.
//
// A nil *SecretFiles reads a file afresh each time it is asked. It is safe
// for concurrent use.
type SecretFiles struct {
	mu    sync.Mutex
	files map[string]*secretFile
}

// secretFile is what one read of a file found, and the public key parsed
// from it once someone asked for one.
type secretFile struct {
	data      []byte
	err       error
	publicKey *publicKey
}

// NewSecretFiles returns a SecretFiles that has read nothing yet.
func NewSecretFiles() *SecretFiles {
	return &SecretFiles{files: map[string]*secretFile{}}
}

// readFile is what the file at path held when it was first read.
func (f *SecretFiles) readFile(path string) ([]byte, error) {
	if f == nil {
		f = NewSecretFiles()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	file := f.file(path)
	return file.data, file.err
}

// publicKey is the PEM public key in the file at path, parsed once.
func (f *SecretFiles) publicKey(path string) *publicKey {
	if f == nil {
		f = NewSecretFiles()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	file := f.file(path)
	if file.publicKey == nil {
		file.publicKey = parsePublicKey(path, file.data, file.err)
	}
	return file.publicKey
}

// file reads the file at path unless it has been read; f.mu is held.
func (f *SecretFiles) file(path string) *secretFile {
	file, ok := f.files[path]
	if !ok {
		data, err := os.ReadFile(path)
		file = &secretFile{data: data, err: err}
		f.files[path] = file
	}
	return file
}
