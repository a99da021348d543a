package window

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// Deduplication keeps, for each id applied inside the window, one 64-bit
// word: a fingerprint of the id (its 64-bit xxHash, fixed seed, with the
// low k bits cleared) and, in those k bits, the bucket it was applied to
// modulo 2^k. k is the smallest width with 2^k > 2R (R = Retention /
// Resolution buckets; k = 11 and 53-bit fingerprints for the default 10m at
// 1s), so a bucket tag decodes exactly relative to the newest bucket as
// long as no entry is 2^k buckets older than it: the table is swept (its
// expired entries dropped) before the window advances more than 2^k − R
// buckets past the last sweep. The fixed seed makes fingerprints the same
// on every node, so they survive MarshalBinary and a handoff.
//
// Two different ids share a fingerprint with probability 2^-(64−k): with n
// ids live in a key's window, a new event is wrongly taken for a duplicate
// with probability about n·2^-(64−k) — 600 ids (1 event/s over the default
// 10 minutes) give 6.7·10^-14 per event, and up to 9,000 live ids per key
// stay under 10^-12.
//
// The table is a bucketed cuckoo hash: groups of 8 words (one 64-byte
// cache line), each fingerprint stored in one of two groups chosen from its
// bits, so a lookup reads at most two cache lines whatever the load. A word
// whose bucket has left the window counts as absent and is reused by the
// next insert that finds it; when neither group of a new fingerprint has a
// free word, a resident is moved to its other group (up to 64 moves), and
// when that fails the table is rebuilt one quarter larger, without its
// expired words. Every sweep also resizes the table to about 1.15 words per
// live id. So the table holds 8 bytes per word at a load of up to ~95%:
// 8.5-10 bytes per live id in steady state, O(1) per event (amortised over
// rebuilds), no allocation in steady state.

// idTable is the set of ids applied inside the window. Bucket tags decode
// relative to the window's newest bucket, which every method is given.
type idTable struct {
	words []uint64 // groups of idGroup words: fingerprint | bucket tag; 0 marks an empty word
	mask  uint64   // 2^k − 1: the bucket tag bits; 0 until first use
	swept int64    // newest bucket at the last sweep
	kick  uint32   // rotates the word a full insert moves
}

const (
	idGroup    = 8  // words per group
	idMaxMoves = 64 // moves an insert tries before the table grows
	idSmall    = 64 // below this many words a full table doubles
)

// idHash hashes an id; the table keeps its high bits (see fingerprint).
func idHash(id string) uint64 { return xxhash.Sum64String(id) }

// tagMask returns 2^k − 1 for the smallest k with 2^k > 2·span.
func tagMask(span int64) uint64 {
	return 1<<bits.Len64(uint64(2*span)) - 1
}

// init sets the tag width for a window of span buckets; a table decoded
// with a wider one keeps it.
func (t *idTable) init(span, newest int64) {
	if m := tagMask(span); t.mask < m {
		t.mask = m
	}
	t.swept = newest
}

// fingerprint returns the fingerprint of hash h: never 0, low k bits 0.
func (t *idTable) fingerprint(h uint64) uint64 {
	fp := h &^ t.mask
	if fp == 0 {
		fp = t.mask + 1
	}
	return fp
}

// bucket decodes the bucket of word w.
func (t *idTable) bucket(w uint64, newest int64) int64 {
	return newest - int64((uint64(newest)-w)&t.mask)
}

// groups returns the two groups of fingerprint fp (possibly equal).
func (t *idTable) groups(fp uint64) (int, int) {
	n := uint64(len(t.words) / idGroup)
	g1, _ := bits.Mul64(fp, n)
	h2 := (fp ^ fp>>29) * 0xbf58476d1ce4e5b9
	g2, _ := bits.Mul64(h2^h2>>32, n)
	return int(g1) * idGroup, int(g2) * idGroup
}

// find returns the index of fp's word, or -1.
func (t *idTable) find(fp uint64) int {
	if len(t.words) == 0 {
		return -1
	}
	g1, g2 := t.groups(fp)
	for _, g := range [2]int{g1, g2} {
		for i, w := range t.words[g : g+idGroup] {
			if w&^t.mask == fp {
				return g + i
			}
		}
	}
	return -1
}

// contains reports whether fingerprint fp was applied to a bucket after
// cut.
func (t *idTable) contains(fp uint64, newest, cut int64) bool {
	i := t.find(fp)
	return i >= 0 && t.bucket(t.words[i], newest) > cut
}

// insert records fp as applied to bucket b; fp must not be contained.
// at is find(fp), taken since the table last changed. Words of buckets ≤
// cut are expired.
func (t *idTable) insert(fp uint64, at int, b, newest, cut int64) {
	word := fp | uint64(b)&t.mask
	if at >= 0 { // an expired entry of the same id
		t.words[at] = word
		return
	}
	if left, ok := t.place(word, newest, cut); !ok {
		t.rebuild(newest, cut, grown(len(t.words)), left)
	}
}

// grown is the size a full table of n words is rebuilt to at least:
// double while small (a new key's ids arrive one by one), a quarter more
// beyond idSmall words.
func grown(n int) int {
	if n < idSmall {
		return 2 * n
	}
	return n + n/4
}

// free returns the index of an empty or expired word of group g, or -1.
func (t *idTable) free(g int, newest, cut int64) int {
	for i, w := range t.words[g : g+idGroup] {
		if w == 0 || t.bucket(w, newest) <= cut {
			return g + i
		}
	}
	return -1
}

// place stores word in one of its groups, moving residents to their other
// group when both are full. When the table is too full it returns false
// and the live word left without a place (word or one it displaced).
func (t *idTable) place(word uint64, newest, cut int64) (uint64, bool) {
	if len(t.words) == 0 {
		return word, false
	}
	// A small table that is full grows rather than shuffling its few
	// groups: 4 moves per group, at most idMaxMoves.
	for range min(idMaxMoves, len(t.words)/idGroup*4) + 1 {
		g1, g2 := t.groups(word &^ t.mask)
		if i := t.free(g1, newest, cut); i >= 0 {
			t.words[i] = word
			return 0, true
		}
		if i := t.free(g2, newest, cut); i >= 0 {
			t.words[i] = word
			return 0, true
		}
		if len(t.words) == idGroup { // one group: nowhere to move to
			return word, false
		}
		// Both full of live words: swap word with a resident of one of
		// them and place the resident next.
		t.kick++
		g := g1
		if t.kick&1 != 0 {
			g = g2
		}
		i := g + int(t.kick>>1%idGroup)
		word, t.words[i] = t.words[i], word
	}
	return word, false
}

// advance is called before the window's newest bucket moves from newest to
// b: past 2^k − R buckets since the last sweep, tags could no longer be
// decoded, so the expired words are dropped first (b − span is the cut
// after the move).
// It reports whether it swept.
func (t *idTable) advance(newest, b, span int64) bool {
	if len(t.words) == 0 || b-t.swept <= int64(t.mask)-span {
		return false
	}
	t.rebuild(newest, b-span, 0, 0)
	t.swept = b
	return true
}

// rebuild drops expired words and adds extra (when not 0), resizing the
// table to at least minWords words and about 1.15 words per live id; a
// table already within 1.1-1.4 words per live id keeps its size.
func (t *idTable) rebuild(newest, cut int64, minWords int, extra uint64) {
	t.swept = newest
	live := t.live(newest, cut)
	want := max(minWords, live+live/8+idGroup)
	n := len(t.words)
	if extra == 0 && n >= want && n <= live+live*4/10+2*idGroup {
		// Keep the size: clear the expired words in place.
		for i, w := range t.words {
			if w != 0 && t.bucket(w, newest) <= cut {
				t.words[i] = 0
			}
		}
		return
	}
	old := t.words
	for {
		nw := allocCap[uint64](want)
		t.words = nw[:cap(nw)/idGroup*idGroup]
		ok := extra == 0
		if !ok {
			_, ok = t.place(extra, newest, cut)
		}
		for _, w := range old {
			if !ok {
				break
			}
			if w != 0 && t.bucket(w, newest) > cut {
				_, ok = t.place(w, newest, cut)
			}
		}
		if ok {
			return
		}
		want += want / 4
	}
}

// live returns the number of live ids (bucket > cut).
func (t *idTable) live(newest, cut int64) int {
	n := 0
	for _, w := range t.words {
		if w != 0 && t.bucket(w, newest) > cut {
			n++
		}
	}
	return n
}
