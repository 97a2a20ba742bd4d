// The audit log's organisation filter: the text box becomes an accessible autocomplete
// (alphagov's accessible-autocomplete, loaded before this as window.accessibleAutocomplete),
// suggesting names from the page's JSON route as the user types. Without JavaScript, or
// without the built assets, the box stays a text box that the server resolves.

const MIN_LENGTH = 2

function suggestions (source) {
  let pending = null
  return (query, populateResults) => {
    if (pending) pending.abort() // only the answer to the latest query is shown
    pending = new AbortController()
    const url = new URL(source, window.location.href)
    url.searchParams.set('q', query)
    fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin', signal: pending.signal })
      .then((response) => (response.ok ? response.json() : { names: [] }))
      .then((body) => populateResults(Array.isArray(body.names) ? body.names : []))
      .catch((error) => {
        if (error.name !== 'AbortError') populateResults([])
      })
  }
}

// The component manages the input's aria-describedby (its own hint for screen readers, removed
// as soon as something is typed); the field's hint and error message must stay described too.
function keepDescribed (input, ids) {
  const restore = () => {
    const current = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean)
    const missing = ids.filter((id) => !current.includes(id))
    if (missing.length) input.setAttribute('aria-describedby', current.concat(missing).join(' '))
  }
  restore()
  new MutationObserver(restore).observe(input, { attributes: true, attributeFilter: ['aria-describedby'] })
}

function enhance (input) {
  const describedBy = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean)
  const container = document.createElement('div')
  input.parentNode.insertBefore(container, input)
  input.remove() // the autocomplete's own input takes its id and name
  window.accessibleAutocomplete({
    element: container,
    id: input.id,
    name: input.name,
    defaultValue: input.value,
    inputClasses: input.className,
    minLength: MIN_LENGTH,
    source: suggestions(input.dataset.source),
    tNoResults: () => 'No organisation’s name starts with that',
    tStatusQueryTooShort: (length) => `Type ${length} or more characters of the name for suggestions`
  })
  const created = document.getElementById(input.id)
  if (created && describedBy.length) keepDescribed(created, describedBy)
}

if (typeof window.accessibleAutocomplete === 'function') {
  document.querySelectorAll('input[data-module="app-organisation-search"]').forEach(enhance)
}
