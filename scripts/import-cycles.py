#!/usr/bin/env python3
"""Import cycles between virt-l3's source files (use crate::/super:: paths,
file by file; unit-test modules ignored). Prints them; exits 1 if any."""
import re,glob,os,sys
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
files=glob.glob('src/**/*.rs',recursive=True)
def modpath(f):
    p=f[4:-3]
    if p.endswith('/mod'): p=p[:-4]
    if p in ('lib','main'): return ''
    return p.replace('/','::')
mods={modpath(f):f for f in files}
def resolve(path):
    parts=path.split('::')
    while parts:
        k='::'.join(parts)
        if k in mods: return k
        parts=parts[:-1]
    return None
g={}
for f in files:
    m=modpath(f); s=open(f).read()
    s=re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*','',s,flags=re.S)
    deps=set()
    for u in re.findall(r'crate::([a-z_0-9:]+)',s):
        r=resolve(u.rstrip(':'))
        if r is not None and r!=m and not m.startswith(r+'::') : deps.add(r)
    for u in re.findall(r'super::([a-z_0-9]+)',s):
        parent='::'.join(m.split('::')[:-1]) if not f.endswith('mod.rs') else '::'.join(m.split('::')[:-1])
        cand=(parent+'::'+u) if parent else u
        r=resolve(cand)
        if r and r!=m and not m.startswith(r+'::'): deps.add(r)
    g[m]=deps
# find cycles (SCCs)
idx={};low={};st=[];on=set();res=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g.get(v,()):
        if w not in g: continue
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(comp)
for v in g:
    if v not in idx: sc(v)
if res:
    print("import cycles between source files:", res)
    sys.exit(1)
print("no import cycle between source files")
