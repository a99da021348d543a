package source

import (
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPools lends franz-go the memory a fetch is decoded into: the
// record slabs and the decompressed batches. A partition actor recycles its
// records once their events are applied (and their dead letters
// acknowledged), which puts the slabs and buffers back here once no record
// refers to them; events never alias that memory (strings are copied into
// the decoder's buffer, the default key when taken: DefaultKeyBytes). At
// 100K events/s these were over a third of the node's allocations on the
// Kafka path.
//
// Memory is kept in power-of-two size classes, each a sync.Pool, so the
// garbage collector still frees what is idle; a slice is got from the
// class that holds the size asked for and put back into the largest class
// its capacity serves; sizes over the largest class are allocated and
// dropped as before.
type fetchPools struct {
	recs [recClasses]sync.Pool  // *[]kgo.Record of capacity >= 1<<class
	buf  [byteClasses]sync.Pool // *[]byte of capacity >= minBuf<<class
}

const (
	recClasses  = 17 // slabs of 1 .. 64K records
	minBuf      = 4 << 10
	byteClasses = 12 // 4 KiB .. 8 MiB
)

var (
	_ kgo.PoolRecords         = (*fetchPools)(nil)
	_ kgo.PoolDecompressBytes = (*fetchPools)(nil)
)

// getClass returns the smallest size class whose slices hold n units when
// class 0 holds min, and whether there is one.
func getClass(n, min, classes int) (int, bool) {
	if n <= min {
		return 0, true
	}
	c := bits.Len(uint((n - 1) / min))
	return c, c < classes
}

// putClass returns the largest size class that a slice of capacity n can
// serve (n >= min<<class), and whether there is one.
func putClass(n, min, classes int) (int, bool) {
	if n < min {
		return 0, false
	}
	c := bits.Len(uint(n/min)) - 1
	return c, c < classes
}

// GetRecords implements kgo.PoolRecords.
func (p *fetchPools) GetRecords(n int) []kgo.Record {
	c, ok := getClass(n, 1, recClasses)
	if !ok {
		return make([]kgo.Record, 0, n)
	}
	if v, _ := p.recs[c].Get().(*[]kgo.Record); v != nil {
		return (*v)[:0]
	}
	return make([]kgo.Record, 0, 1<<c)
}

// PutRecords implements kgo.PoolRecords.
func (p *fetchPools) PutRecords(rs []kgo.Record) {
	rs = rs[:cap(rs)]
	c, ok := putClass(len(rs), 1, recClasses)
	if !ok {
		return
	}
	clear(rs) // no record keeps its buffers alive from the pool
	p.recs[c].Put(&rs)
}

// GetDecompressBytes implements kgo.PoolDecompressBytes. Record batches of
// small JSON events compress 3-5×; a short guess is grown by franz-go and
// the grown slice comes back to its own class.
func (p *fetchPools) GetDecompressBytes(compressed []byte, _ kgo.CompressionCodecType) []byte {
	c, ok := getClass(4*len(compressed), minBuf, byteClasses)
	if !ok {
		return nil // franz-go allocates what it needs
	}
	if v, _ := p.buf[c].Get().(*[]byte); v != nil {
		return (*v)[:0]
	}
	return make([]byte, 0, minBuf<<c)
}

// PutDecompressBytes implements kgo.PoolDecompressBytes.
func (p *fetchPools) PutDecompressBytes(b []byte) {
	// A slice franz-go grew has any capacity: it serves the class below.
	c, ok := putClass(cap(b), minBuf, byteClasses)
	if !ok {
		return
	}
	b = b[:0]
	p.buf[c].Put(&b)
}
