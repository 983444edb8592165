package proxy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"sync"
)

// idGen issues the 32-bit ids of the HTTP manager: mansession_id cookie
// values and digest nonces, both shown as 8 lower-case hex digits as
// Asterisk shows them.
//
// An id is a keyed pseudo-random permutation (a 10-round Feistel network
// over two 16-bit halves whose round function is AES-128 under a key drawn
// from crypto/rand at start-up, the construction of FF1-style
// format-preserving encryption) of a counter. So ids look random and
// cannot be predicted from the ones a client has seen, yet no id is ever
// issued twice: not within the 2^32 ids of one key, and after that the
// key is replaced and the manager skips ids still in use. A stale cookie
// can therefore never land in a later session, as it can in Asterisk
// (ast_random() XOR an address).
//
// 32 bits is what clients expect (Asterisk's "%08x"), but it is small: an
// attacker who can send many requests can find one of N live sessions in
// about 2^32/N guesses. The manager counts requests with unknown cookies
// (HTTPStats.UnknownCookies) so that guessing shows; per-address rate
// limits of the front door are the remedy (not yet implemented).
//
// The zero value is not usable; create one with newIDGen. An idGen is safe
// for concurrent use.
type idGen struct {
	mu    sync.Mutex
	block cipher.Block
	ctr   uint32
	epoch uint64 // keys used so far (rekeys after 2^32 ids)
}

func newIDGen() *idGen {
	g := &idGen{}
	g.rekey()
	return g
}

func (g *idGen) rekey() {
	var key [16]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never fails (Go 1.24+)
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic("proxy: aes: " + err.Error()) // impossible with a 16-byte key
	}
	g.block, g.ctr = b, 0
	g.epoch++
}

// next returns a fresh non-zero id, and whether the key changed since the
// previous call (the caller must then skip ids in use).
func (g *idGen) next() (id uint32, rekeyed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.ctr == ^uint32(0) {
			g.rekey()
			rekeyed = true
		}
		g.ctr++
		if id = g.permute(g.ctr); id != 0 {
			return id, rekeyed
		}
	}
}

// permute is the Feistel network. g.mu must be held.
func (g *idGen) permute(x uint32) uint32 {
	l, r := uint16(x>>16), uint16(x)
	var in, out [16]byte
	for round := range 10 {
		in[0] = byte(round)
		binary.BigEndian.PutUint16(in[1:], r)
		g.block.Encrypt(out[:], in[:])
		l, r = r, l^binary.BigEndian.Uint16(out[:])
	}
	return uint32(l)<<16 | uint32(r)
}
