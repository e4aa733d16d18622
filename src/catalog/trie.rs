//! The prefix tree of title token sequences that constrains decoding: every path from
//! the root spells one title followed by the answer-end token, and the node after that
//! token lists the catalogue entries with this title.
//!
//! The nodes live in a persistent vector (`imbl`), so a catalogue update copies only the
//! nodes on the changed path (each with its list of children), never the whole tree, and
//! the snapshot before it stays intact for the queries reading it.

#[derive(Debug, Clone, Default)]
struct Node {
    /// `(token, child node)`, sorted by token.
    children: Vec<(u32, u32)>,
    /// Catalogue indices whose title ends here (only on nodes reached by answer-end).
    items: Vec<u32>,
    /// Catalogue entries below this node, itself included.
    count: u32,
}

/// The root node: the empty prefix. (Crate-visible only, so that the C header, which
/// cbindgen generates from every public constant, does not pick it up.)
pub(crate) const ROOT: u32 = 0;

#[derive(Debug, Clone)]
pub struct TitleTrie {
    nodes: imbl::Vector<Node>,
}

impl Default for TitleTrie {
    fn default() -> Self {
        TitleTrie {
            nodes: imbl::Vector::unit(Node::default()),
        }
    }
}

impl TitleTrie {
    /// Adds a path (title tokens then answer-end) ending in catalogue entry `item`.
    pub fn insert(&mut self, path: &[u32], item: u32) {
        let mut node = ROOT;
        self.nodes[node as usize].count += 1;
        for &tok in path {
            node = match self.child(node, tok) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len() as u32;
                    self.nodes.push_back(Node::default());
                    let children = &mut self.nodes[node as usize].children;
                    let at = children.partition_point(|&(t, _)| t < tok);
                    children.insert(at, (tok, c));
                    c
                }
            };
            self.nodes[node as usize].count += 1;
        }
        self.nodes[node as usize].items.push(item);
    }

    /// Removes entry `item` from the end of `path`; a branch left with no entries is cut
    /// from its parent. Returns false, changing nothing, when `item` is not there.
    pub fn remove(&mut self, path: &[u32], item: u32) -> bool {
        let Some(nodes) = self.walk(path) else {
            return false;
        };
        let end = *nodes.last().unwrap_or(&ROOT);
        let Some(at) = self.nodes[end as usize]
            .items
            .iter()
            .position(|&i| i == item)
        else {
            return false;
        };
        self.nodes[end as usize].items.remove(at);
        self.nodes[ROOT as usize].count -= 1;
        let mut parent = ROOT;
        for (&node, &tok) in nodes.iter().zip(path) {
            let n = &mut self.nodes[node as usize];
            n.count -= 1;
            if n.count == 0 {
                // Nothing below: cut the branch here (its nodes stay, unreachable).
                let children = &mut self.nodes[parent as usize].children;
                if let Ok(i) = children.binary_search_by_key(&tok, |&(t, _)| t) {
                    children.remove(i);
                }
                break;
            }
            parent = node;
        }
        true
    }

    pub fn child(&self, node: u32, token: u32) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        children
            .binary_search_by_key(&token, |&(t, _)| t)
            .ok()
            .map(|i| children[i].1)
    }

    pub fn children(&self, node: u32) -> &[(u32, u32)] {
        &self.nodes[node as usize].children
    }

    /// Catalogue entries completed at `node`.
    pub fn items(&self, node: u32) -> &[u32] {
        &self.nodes[node as usize].items
    }

    /// Catalogue entries at or below `node`.
    pub fn count(&self, node: u32) -> u32 {
        self.nodes[node as usize].count
    }

    /// The nodes along `path` from the root (root excluded), or `None` if it leaves the tree.
    pub fn walk(&self, path: &[u32]) -> Option<Vec<u32>> {
        let mut node = ROOT;
        let mut out = Vec::with_capacity(path.len());
        for &t in path {
            node = self.child(node, t)?;
            out.push(node);
        }
        Some(out)
    }

    /// Nodes held, reachable or cut by removals.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }
}
