package rules

import "unicode/utf8"

// matchGlob reports whether key matches pattern, where '*' matches any run of
// characters (dots included, possibly empty), '?' matches exactly one
// character (rune) and every other byte matches itself. There is no escape
// and no character class. It runs in O(len(pattern)·len(key)) worst case
// with no allocation (the classic single-backtrack greedy star algorithm).
func matchGlob(pattern, key string) bool {
	p, k := 0, 0
	starP, starK := -1, 0
	for k < len(key) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starK = p, k
				p++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(key[k:])
				p++
				k += n
				continue
			default:
				if c == key[k] {
					p++
					k++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last star absorb one more character and retry.
		_, n := utf8.DecodeRuneInString(key[starK:])
		starK += n
		p, k = starP+1, starK
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
