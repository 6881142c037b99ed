package push

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/SherClockHolmes/webpush-go"
)

// KeyPair is the application server's VAPID key pair (RFC 8292). A
// browser binds each push subscription to the public key it was made
// with, and push services refuse pushes signed with another: so every
// instance must use the same pair, and keep it across restarts.
//
// Its private key never leaves the value but through Encode, for a
// store: String, GoString and LogValue show the public key only.
type KeyPair struct {
	public  string // base64url without padding: the uncompressed P-256 point
	private string // base64url without padding: the 32-byte scalar
}

// NewKeyPair makes a fresh key pair.
func NewKeyPair() (KeyPair, error) {
	private, public, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		return KeyPair{}, fmt.Errorf("make a VAPID key pair: %w", err)
	}
	return KeyPair{public: public, private: private}, nil
}

// Public is the public key as the browser's PushManager.subscribe takes
// it (applicationServerKey): an uncompressed P-256 point, base64url
// without padding.
func (k KeyPair) Public() string { return k.public }

// isZero reports whether k holds no key pair.
func (k KeyPair) isZero() bool { return k.private == "" }

// String shows the public key only.
func (k KeyPair) String() string { return "VAPID key pair with public key " + k.public }

// GoString shows the public key only, for %#v.
func (k KeyPair) GoString() string { return k.String() }

// LogValue shows the public key only.
func (k KeyPair) LogValue() slog.Value { return slog.StringValue(k.String()) }

// keyPairFile is how a key pair is stored: JSON, so that an operator can
// see which public key a file holds.
type keyPairFile struct {
	Public  string `json:"public"`
	Private string `json:"private"`
}

// Encode is the key pair as a store keeps it, private key included.
func (k KeyPair) Encode() []byte {
	b, _ := json.Marshal(keyPairFile{Public: k.public, Private: k.private}) // strings only: Marshal cannot fail
	return b
}

// errBadKeyPair wraps every reason stored bytes are not a key pair.
var errBadKeyPair = errors.New("not a VAPID key pair")

// DecodeKeyPair reads what Encode wrote, and checks that its public key is
// its private key's: a pair that does not match would have every push
// refused.
func DecodeKeyPair(data []byte) (KeyPair, error) {
	var f keyPairFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return KeyPair{}, fmt.Errorf("%w: %w", errBadKeyPair, err)
	}
	scalar, err := base64.RawURLEncoding.DecodeString(f.Private)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: the private key is not base64url: %w", errBadKeyPair, err)
	}
	private, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: the private key: %w", errBadKeyPair, err)
	}
	if base64.RawURLEncoding.EncodeToString(private.PublicKey().Bytes()) != f.Public {
		return KeyPair{}, fmt.Errorf("%w: the public key is not the private key's", errBadKeyPair)
	}
	return KeyPair{public: f.Public, private: f.Private}, nil
}
