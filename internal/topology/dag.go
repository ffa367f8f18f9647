package topology

import (
	"slices"
)

// levels runs Kahn's algorithm over nodes, where deps[n] are the nodes n
// depends on (all of them in nodes). Each level holds the nodes whose
// dependencies all sit in earlier levels, sorted by name. Nodes left over
// are on or behind a cycle.
func levels(nodes []string, deps map[string][]string) (lvls [][]string, leftover []string) {
	indegree := make(map[string]int, len(nodes))
	dependents := make(map[string][]string, len(nodes))
	for _, n := range nodes {
		indegree[n] = len(deps[n])
		for _, d := range deps[n] {
			dependents[d] = append(dependents[d], n)
		}
	}
	var current []string
	for _, n := range nodes {
		if indegree[n] == 0 {
			current = append(current, n)
		}
	}
	placed := 0
	for len(current) > 0 {
		slices.Sort(current)
		lvls = append(lvls, current)
		placed += len(current)
		var next []string
		for _, n := range current {
			for _, m := range dependents[n] {
				indegree[m]--
				if indegree[m] == 0 {
					next = append(next, m)
				}
			}
		}
		current = next
	}
	if placed < len(nodes) {
		for _, n := range nodes {
			if indegree[n] > 0 {
				leftover = append(leftover, n)
			}
		}
		slices.Sort(leftover)
	}
	return lvls, leftover
}

// cycles finds one cycle in every strongly connected component of the graph
// that has one: the shortest cycle through the component's smallest node,
// starting and ending there, with successors tried in sorted order. The result
// is ordered by that first node, so the same graph always gives the same cycles.
// succ must return sorted successors that are all in nodes.
func cycles(nodes []string, succ func(string) []string) [][]string {
	sorted := slices.Clone(nodes)
	slices.Sort(sorted)
	comp := sccs(sorted, succ)
	var out [][]string
	seen := make(map[int]bool)
	for _, n := range sorted {
		c := comp[n]
		if seen[c] {
			continue
		}
		seen[c] = true
		if cyc := shortestCycle(n, succ, func(m string) bool { return comp[m] == c }); cyc != nil {
			out = append(out, cyc)
		}
	}
	return out
}

// shortestCycle searches breadth-first from start for a path back to start
// through nodes inside the component; nil when there is none.
func shortestCycle(start string, succ func(string) []string, inside func(string) bool) []string {
	parent := map[string]string{}
	queue := []string{start}
	visited := map[string]bool{start: true}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, m := range succ(n) {
			if !inside(m) {
				continue
			}
			if m == start {
				path := []string{start}
				for at := n; at != start; at = parent[at] {
					path = append(path, at)
				}
				path = append(path, start)
				// path is start, last, ..., first, start: reverse the middle.
				slices.Reverse(path[1 : len(path)-1])
				return path
			}
			if !visited[m] {
				visited[m] = true
				parent[m] = n
				queue = append(queue, m)
			}
		}
	}
	return nil
}

// sccs labels each node with its strongly connected component (Tarjan's
// algorithm, iterative so that a long chain cannot exhaust the stack).
func sccs(nodes []string, succ func(string) []string) map[string]int {
	index := make(map[string]int, len(nodes))
	low := make(map[string]int, len(nodes))
	onStack := make(map[string]bool, len(nodes))
	comp := make(map[string]int, len(nodes))
	var stack []string
	next, ncomp := 0, 0

	type frame struct {
		node string
		succ []string
		i    int
	}
	for _, root := range nodes {
		if _, ok := index[root]; ok {
			continue
		}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		work := []frame{{node: root, succ: succ(root)}}
		for len(work) > 0 {
			f := &work[len(work)-1]
			if f.i < len(f.succ) {
				m := f.succ[f.i]
				f.i++
				if _, ok := index[m]; !ok {
					index[m], low[m] = next, next
					next++
					stack = append(stack, m)
					onStack[m] = true
					work = append(work, frame{node: m, succ: succ(m)})
				} else if onStack[m] {
					low[f.node] = min(low[f.node], index[m])
				}
				continue
			}
			n := f.node
			work = work[:len(work)-1]
			if len(work) > 0 {
				p := work[len(work)-1].node
				low[p] = min(low[p], low[n])
			}
			if low[n] == index[n] {
				for {
					m := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[m] = false
					comp[m] = ncomp
					if m == n {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp
}
