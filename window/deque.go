package window

// The header and value slices are deques: live elements are buf[head:],
// eviction advances head, and inserts make room by compacting (dropping
// buf[:head]) or by reallocating. Growth is ×1.5 rounded up to the
// allocator's size class, not ×2, to keep small windows small.

// dqRoom makes room for extra more elements after the live ones.
func dqRoom[T any](buf []T, head int32, extra int) ([]T, int32) {
	if len(buf)+extra <= cap(buf) {
		return buf, head
	}
	live := len(buf) - int(head)
	need := live + extra
	c := cap(buf)
	if need <= c && int(head) >= c/4 && need*4 > c {
		n := copy(buf[:live], buf[head:])
		return buf[:n], 0
	}
	nc := need
	if c > 0 {
		nc += need / 2
	}
	nb := allocCap[T](nc)[:live]
	copy(nb, buf[head:])
	return nb, 0
}

// allocCap returns an empty slice with capacity at least n, rounded up to
// the allocator's size class.
func allocCap[T any](n int) []T {
	return append([]T(nil), make([]T, n)...)[:0]
}

// dqInsert inserts v at live position pos (0 ≤ pos ≤ live length).
func dqInsert[T any](buf []T, head int32, pos int, v T) ([]T, int32) {
	buf, head = dqRoom(buf, head, 1)
	buf = buf[:len(buf)+1]
	live := buf[head:]
	copy(live[pos+1:], live[pos:])
	live[pos] = v
	return buf, head
}

// dqRemove removes k elements at live position pos.
func dqRemove[T any](buf []T, head int32, pos, k int) []T {
	live := buf[head:]
	copy(live[pos:], live[pos+k:])
	return buf[:len(buf)-k]
}
