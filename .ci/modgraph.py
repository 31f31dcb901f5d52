import os,re,collections,sys
root='src'
mailsubs={f[:-3] if f.endswith('.rs') else f for f in os.listdir('src/mail') if f!='mod.rs'}
def node_of(path):
    rel=os.path.relpath(path,root)[:-3].split('/')
    if rel[-1]=='mod': rel=rel[:-1]
    if rel[0] in ('lib','main'): return None
    if rel[0]=='mail' and len(rel)>1: return 'mail::'+rel[1]
    return rel[0]
g=collections.defaultdict(set)
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); a=node_of(p)
        if not a: continue
        s=open(p).read()
        s=re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*','',s,flags=re.S)
        for m in re.finditer(r'crate::([a-z_0-9]+)(?:::([a-z_0-9]+))?',s):
            b=m.group(1)
            if b=='mail' and m.group(2) in mailsubs: b='mail::'+m.group(2)
            if b!=a: g[a].add(b)
        depth=len(os.path.relpath(p,root).split('/'))-(1 if f=='mod.rs' else 0)
        # relative paths inside mail/: parent's items and siblings
        if a=='mail':
            for m in re.finditer(r'\b([a-z_]+)::',s):
                if m.group(1) in mailsubs: g[a].add('mail::'+m.group(1))
        elif a.startswith('mail::'):
            # `super::` k times from a module `depth` deep names a module
            # `depth - k` deep: inside `mail::X` itself it is no edge.
            for m in re.finditer(r'(?<![a-z_:])((?:super::)+)([a-z_0-9]+)',s):
                k=m.group(1).count('super::'); y=m.group(2)
                if depth-k>1: continue
                b='mail::'+y if y in mailsubs else 'mail'
                if b!=a: g[a].add(b)
for a in sorted(g): print(f'{a} -> {", ".join(sorted(g[a]))}')
color={};cyc=set()
def dfs(u,st):
    color[u]=1;st.append(u)
    for v in sorted(g[u]):
        if color.get(v)==1: cyc.add(' -> '.join(st[st.index(v):]+[v]))
        elif not color.get(v): dfs(v,st)
    st.pop();color[u]=2
for n in sorted(g):
    if not color.get(n): dfs(n,[])
print('cycles:', sorted(cyc) if cyc else 'none')
